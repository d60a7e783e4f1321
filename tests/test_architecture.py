"""The package's layers, as docs/architecture.md draws them: each imports only the layers above it."""

from __future__ import annotations

import ast
from pathlib import Path

import mlplab

PACKAGE = Path(mlplab.__file__).parent
LAYERS = ("errors", "core", "lightning_internals", "fastpath", "plots", "run", "tools", "chapter")
PRIVATE_LIGHTNING = ("_batches_that_stepped", "_on_before_step", "_on_after_step", "_call_callback_hooks",
                     "metrics_keys")


def modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py"))


def mlplab_imports(path: Path) -> set[str]:
    """The top-level mlplab packages a module imports, lazily or not."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name.split(".")[1] for name in names if name.startswith("mlplab.")}
    return found


def layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def test_each_layer_imports_only_the_layers_above_it():
    for path in modules():
        if layer(path) == "__init__":
            continue
        below = {name for name in mlplab_imports(path)
                 if name in LAYERS and LAYERS.index(name) > LAYERS.index(layer(path))}
        assert not below, f"{path.relative_to(PACKAGE)} imports {below}, a layer below it"


def test_every_module_is_in_a_layer_and_no_two_share_a_name():
    names = [path.stem for path in modules() if path.stem not in ("__init__", "__main__")]
    assert sorted(set(layer(path) for path in modules()) - {"__init__"}) == sorted(LAYERS)
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
    packages = {path.parent.name for path in modules() if path.name == "__init__.py"}
    assert not packages & set(names), packages & set(names)


def test_private_lightning_names_and_chunks_stay_in_their_homes():
    for path in modules():
        text = path.read_text()
        if path.name != "lightning_internals.py":
            assert not [name for name in PRIVATE_LIGHTNING if name in text], path
        if layer(path) != "fastpath":
            assert "chunk" not in text.lower(), f"{path.relative_to(PACKAGE)} names chunks outside mlplab.fastpath"


def test_no_module_is_over_350_lines():
    long = {str(path.relative_to(PACKAGE)): lines for path in modules()
            if (lines := len(path.read_text().splitlines())) > 350}
    assert not long, long
