"""wandb without its server, and the WANDB_* values wandb would refuse (src/mlplab/run/loggers.py).

A run with credentials whose server cannot be used logs offline into its run directory, says so in
one line with the `wandb sync` command, and finishes; a WANDB_* value wandb refuses, a logger
setting it refuses, or WANDB_MODE=online without credentials stops the run before any work.
"""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
import wandb

from helpers import REPO, script_env
from mlplab.errors import ConfigError
from mlplab.run.loggers import OFFLINE_MODES, ONLINE_MODES, check_wandb_environment, wandb_server_problem
from mlplab.run.records import read_json

FAKE_KEY = "a" * 40  # the form of a real key (40 characters), known to no server
NOTICE = re.compile(r"^warning: wandb's server (\S+) cannot be used \((.+)\); this run logs offline to (\S+): "
                    r"upload it later with `wandb sync (\S+)`$", re.MULTILINE)
CREDENTIAL_VARIABLES = ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE", "WANDB_BASE_URL",
                        "WANDB_SWEEP_ID", "WANDB_INIT_TIMEOUT")


@pytest.fixture
def no_credentials(tmp_path, monkeypatch) -> Path:
    """A machine without wandb credentials: no key, no .netrc, no wandb settings of its own."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    yield tmp_path
    wandb.teardown()  # wandb's settings are read once per process; the next test sets its own


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def serve(behaviour: str) -> tuple[Server, threading.Event]:
    """A local HTTP server that answers every request with 400 or 500, or takes it and never answers."""
    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if behaviour == "hang":
                release.wait(120)  # a firewall that lets the connection in and the answer never out
                return
            self.send_response(400 if behaviour == "answer" else 500)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, release


@pytest.fixture
def silent_server() -> Iterator[str]:
    server, release = serve("hang")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()


def closed_port() -> str:
    """A local address where nothing listens: the connection is refused at once."""
    server = Server(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}"


# --- the modes and the checks: fast, in this process, no network ---------------------------------

def test_modes_are_wandbs_own():
    # Pins the dependency: a wandb that adds or drops a mode must be looked at here.
    modes = typing.get_args(wandb.Settings.model_fields["mode"].annotation)
    assert set(modes) == {*ONLINE_MODES, *OFFLINE_MODES, "disabled"}


HOSTILE_ENVIRONMENT = [
    ("WANDB_MODE", "bogus"), ("WANDB_MODE", ""), ("WANDB_MODE", "Online"), ("WANDB_MODE", "OFFLINE"),
    ("WANDB_MODE", " offline"), ("WANDB_MODE", "offline\n"), ("WANDB_MODE", "0"), ("WANDB_MODE", "nan"),
    ("WANDB_MODE", "online,offline"), ("WANDB_MODE", "x" * 10_000), ("WANDB_MODE", "онлайн"),
    ("WANDB_BASE_URL", ""), ("WANDB_BASE_URL", "bogus"), ("WANDB_BASE_URL", "ftp://example.com"),
    ("WANDB_BASE_URL", "https://wandb.ai"), ("WANDB_BASE_URL", "http://"),
    ("WANDB_INIT_TIMEOUT", "abc"), ("WANDB_INIT_TIMEOUT", "0"), ("WANDB_INIT_TIMEOUT", "-1"),
    ("WANDB_INIT_TIMEOUT", "nan"), ("WANDB_INIT_TIMEOUT", "inf"), ("WANDB_INIT_TIMEOUT", ""),
    ("WANDB_CONSOLE", "bogus"), ("WANDB_PROJECT", "a/b"), ("WANDB_RESUME", "bogus"),
]


@pytest.mark.parametrize(("name", "value"), HOSTILE_ENVIRONMENT)
def test_a_wandb_variable_wandb_refuses_is_one_line_naming_it(name, value, compose_cfg, no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        check_wandb_environment(compose_cfg("logger=default"))
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"environment variable {name}={value!r} is not allowed")


@pytest.mark.parametrize("logger", ["csv", "none"])
def test_without_a_wandb_logger_wandbs_variables_are_not_ours(logger, compose_cfg, no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "bogus")
    check_wandb_environment(compose_cfg(f"logger={logger}"))


@pytest.mark.parametrize("mode", ONLINE_MODES)
def test_online_without_credentials_is_refused_with_the_ways_out(mode, compose_cfg, no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", mode)
    with pytest.raises(ConfigError, match=rf"^WANDB_MODE={mode} needs wandb credentials") as refused:
        check_wandb_environment(compose_cfg("logger=wandb"))
    assert all(way in str(refused.value) for way in ("`wandb login`", "WANDB_API_KEY", "WANDB_MODE=offline"))


@pytest.mark.parametrize("credentials", ["key", "netrc", "netrc of the server"])
def test_online_with_credentials_passes_without_network(credentials, compose_cfg, no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    if credentials == "key":
        monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    else:
        host = "api.wandb.ai"
        if credentials == "netrc of the server":
            monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.example.test:8080")
            host = "wandb.example.test:8080"
        (no_credentials / "netrc").write_text(f"machine {host}\n  login user\n  password {FAKE_KEY}\n")
    started = time.monotonic()
    check_wandb_environment(compose_cfg("logger=default"))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("mode", [*OFFLINE_MODES, "disabled"])
def test_offline_and_disabled_need_no_credentials(mode, compose_cfg, no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", mode)
    check_wandb_environment(compose_cfg("logger=default"))


@pytest.mark.parametrize(("override", "key"), [
    ("logger.wandb.project=a/b", "logger.wandb.project"),
    ("logger.wandb.project='x#y'", "logger.wandb.project"),
    ("logger.wandb.project=" + "p" * 200, "logger.wandb.project"),
])
def test_a_logger_setting_wandb_refuses_is_one_line_naming_it(override, key, compose_cfg, no_credentials,
                                                               monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}=.* is not allowed: wandb says"):
        check_wandb_environment(compose_cfg("logger=default", override))


# --- the server probe: local servers, in this process ----------------------------------------

@pytest.mark.parametrize(("behaviour", "usable"), [("answer", True), ("error", False)])
def test_probe_counts_an_answer_and_refuses_a_server_in_trouble(behaviour, usable, no_credentials):
    server, release = serve(behaviour)
    try:
        problem = wandb_server_problem(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    finally:
        release.set()
        server.shutdown()
    assert (problem is None) == usable, problem
    assert usable or "HTTP 500" in problem


def test_probe_gives_up_on_a_server_that_never_answers_within_its_timeout(silent_server, no_credentials):
    started = time.monotonic()
    problem = wandb_server_problem(silent_server, timeout=1)
    assert problem == "no answer within 1 s" and time.monotonic() - started < 3


@pytest.mark.parametrize("url", ["refused", "http://name.invalid", "http://[::1", "http://127.0.0.1:99999"])
def test_probe_names_why_a_server_cannot_be_reached(url, no_credentials):
    problem = wandb_server_problem(closed_port() if url == "refused" else url, timeout=3)
    assert problem and "\n" not in problem


# --- real runs: train.py as a user starts it ---------------------------------------------------

def train(run_dir: Path, *overrides: str, timeout: int = 120, **environment: str | None):
    env = {key: value for key, value in script_env().items() if key not in CREDENTIAL_VARIABLES}
    env.update({key: value for key, value in environment.items() if value is not None})
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "+experiment=smoke", "logger=default",
                             f"hydra.run.dir={run_dir}", *overrides], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=timeout)
    return result, time.monotonic() - started


@pytest.mark.slow
@pytest.mark.parametrize("server", ["wandb's own", "silent", "refusing, WANDB_MODE=online"])
def test_a_run_whose_server_cannot_be_used_goes_on_offline(server, mnist, tmp_path, silent_server):
    """wandb's own server cannot be reached from a machine without network (here, and on a laptop
    offline); where it can, it refuses the fake key. Both end in the offline run."""
    base_url = {"wandb's own": None, "silent": silent_server}.get(server, closed_port())
    run_dir = tmp_path / "run"
    result, seconds = train(run_dir, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=base_url,
                            WANDB_MODE="online" if "online" in server else None)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert seconds < 40, f"{seconds:.0f} s"
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    assert (read_json(run_dir / "status.json") or {}).get("status") == "finished"
    (notice,) = NOTICE.findall(output)
    offline_run = Path(notice[3])
    assert offline_run == Path(notice[2]) and offline_run.parent == run_dir / "wandb"
    assert offline_run.name.startswith("offline-run-") and list(offline_run.glob("run-*.wandb"))


@pytest.mark.slow
@pytest.mark.parametrize(("environment", "expected"), [
    ({"WANDB_MODE": "bogus"}, "environment variable WANDB_MODE='bogus' is not allowed"),
    ({"WANDB_MODE": "online"}, "WANDB_MODE=online needs wandb credentials"),
    ({"WANDB_MODE": "offline", "WANDB_BASE_URL": "ftp://x"}, "environment variable WANDB_BASE_URL='ftp://x'"),
])
def test_train_refuses_what_wandb_would_refuse_before_any_work(environment, expected, mnist, tmp_path):
    run_dir = tmp_path / "run"
    result, seconds = train(run_dir, HOME=str(tmp_path), NETRC=str(tmp_path / "netrc"),
                            WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), **environment)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output and "HYDRA_FULL_ERROR" not in output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert expected in line
    assert not (run_dir / "wandb").exists() and not (run_dir / "checkpoints").exists()
