"""mlplab.run.overrides: any text, quoted for Hydra's override grammar, comes back exactly from Hydra's parser
and OmegaConf's resolution, and through a real compose of conf/config.yaml (resume, hydra.run.dir)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import mlplab.run.records  # noqa: F401 - registers the resolvers conf/config.yaml names
from helpers import CONF
from mlplab.run.overrides import omegaconf_literal, override

# What a file name may hold on Linux: any character but NUL and '/' (surrogates are not text).
NAME_CHARACTERS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/")
COMPONENT = st.text(NAME_CHARACTERS, min_size=1, max_size=12)
PATHS = st.lists(COMPONENT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts))
# Characters that mean something to Hydra's grammar or OmegaConf, drawn often so that they meet each other.
HOSTILE = st.lists(st.sampled_from(list(" ,='\"$\\[]{}()#:~+@%*?|!`^&;<>\t\n\r") + ["${", "${x}", "ü", "😀", "a"]),
                   min_size=1, max_size=12).map(lambda pieces: "/" + "".join(pieces))
TABLE = ["/a b", "/a,b", "/a=b", "/it's", '/say "x"', "/$HOME", "/${x}", "/\\${x}", "/\\\\${x}", "/${x", "/}$",
         "/back\\", "/back\\\\", "/q\\'", "/[0]", "/{a:1}", "/a:b", "/#c", "/ü", "/😀", "/ lead", "/trail ",
         "/tab\t", "/new\nline", "/null", "/true", "/1e3", "/${oc.env:HOME}", "/${hydra:runtime.cwd}", "/???"]


def round_trip(key: str, value: str) -> str:
    """What Hydra's parser and then OmegaConf make of `override(key, value)`."""
    parsed = OverridesParser.create().parse_override(override(key, value))
    assert parsed.key_or_group == key and not parsed.is_sweep_override()
    return OmegaConf.create({key: parsed.value()})[key]


@pytest.mark.parametrize("value", TABLE)
def test_hostile_paths_come_back_exactly(value):
    assert round_trip("resume", value) == value


@given(PATHS)
@settings(max_examples=400, deadline=None)
def test_any_path_the_os_accepts_comes_back_exactly(path):
    assert round_trip("resume", path) == path


@given(HOSTILE)
@settings(max_examples=400, deadline=None)
def test_grammar_characters_meeting_each_other_come_back_exactly(path):
    assert round_trip("hydra.run.dir", path) == path


@given(st.text(NAME_CHARACTERS | st.just("/"), min_size=1).filter(lambda text: text != "???"))
@settings(max_examples=200, deadline=None)
def test_any_text_comes_back_exactly(text):
    assert round_trip("name", text) == text


def test_omegaconf_would_resolve_what_is_not_escaped():
    """Why the escape exists: OmegaConf resolves `${...}` even in a value Hydra got quoted."""
    assert OmegaConf.create({"x": "X", "v": "/a/${x}"}).v == "/a/X"
    assert OmegaConf.create({"x": "X", "v": omegaconf_literal("/a/${x}")}).v == "/a/${x}"


def test_omegaconfs_missing_marker_is_refused():
    with pytest.raises(ValueError, match="missing value"):
        override("resume", "???")


@given(st.lists(st.sampled_from([*TABLE[:-1], "/plain"]), min_size=1, max_size=3).map("".join) | PATHS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow  # a real Hydra run directory: seconds
def test_a_real_compose_resolves_resume_and_the_run_dir_to_the_exact_path(path):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True,
                      overrides=[override("resume", path), override("hydra.run.dir", path)])
    assert cfg.resume == path and cfg.hydra.run.dir == path
    assert cfg.hydra.output_subdir.startswith(".hydra/resumed-")  # the resolver got the resolved path
