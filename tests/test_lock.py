"""requirements/lock.txt stays in step with pyproject.toml: `make lock` after changing either."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import REPO

PINNED = re.compile(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", re.MULTILINE)


def locked() -> dict[str, str]:
    text = (REPO / "requirements" / "lock.txt").read_text()
    return {canonicalize_name(name): version for name, version in PINNED.findall(text)}


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(line) for line in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_every_dependency_is_locked_at_a_version_its_range_allows():
    versions = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in versions, f"{requirement.name} is not in requirements/lock.txt: run `make lock`"
        assert requirement.specifier.contains(versions[name], prereleases=True), (
            f"{requirement.name}=={versions[name]} in the lock is outside {requirement.specifier}: run `make lock`")


def test_every_locked_package_has_hashes_and_torch_is_the_tested_build():
    text = (REPO / "requirements" / "lock.txt").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n\n", 1)[-1])
    assert all("--hash=sha256:" in block for block in blocks if PINNED.match(block))
    torch_pins = dict(line.split("==") for line in (REPO / "requirements" / "torch.txt").read_text().split()
                      if "==" in line)
    assert {name: locked()[name] for name in torch_pins} == torch_pins
