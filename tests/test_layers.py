"""The layers of DESIGN.md: each package imports only from packages below it, and no module
imports another module's private names."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gatedrnn"
#: top to bottom: a package may import from itself and from those after it
LAYERS = ("cli", "experiments", "training", "models", "data", "torch_engine", "reference", "cells")
#: known exceptions still to be removed (file -> private names); none now
KNOWN_PRIVATE: dict = {}


def imports(path: Path):
    """(line, module path inside gatedrnn as a tuple, names) of every gatedrnn import in ``path``."""
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]  # ("gatedrnn", "training")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = base + tuple((node.module or "").split(".")) if node.module else base
            else:
                target = tuple((node.module or "").split("."))
            if target[:1] == ("gatedrnn",):
                yield node.lineno, target[1:], [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "gatedrnn":
                    yield node.lineno, tuple(a.name.split(".")[1:]), []


def sources():
    return sorted(p for p in SRC.rglob("*.py") if p.parent != SRC)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down_the_layers(path):
    own = path.relative_to(SRC).parts[0]
    assert own in LAYERS, f"{own}/ is not in DESIGN.md's layers {LAYERS}"
    for line, target, names in imports(path):
        if not target or target[0] not in LAYERS:
            continue
        if target[0] == own:
            continue
        assert LAYERS.index(target[0]) > LAYERS.index(own), (
            f"{path.relative_to(SRC)}:{line} imports gatedrnn.{'.'.join(target)}: {own}/ sits below {target[0]}/")


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_imports_another_modules_private_names(path):
    for line, target, names in imports(path):
        known = KNOWN_PRIVATE.get(path.relative_to(SRC).as_posix(), set())
        private = [n for n in names if n.startswith("_") and not n.startswith("__") and n not in known]
        assert not private, f"{path.relative_to(SRC)}:{line} imports {private} from gatedrnn.{'.'.join(target)}"


def test_the_checker_sees_an_upward_and_a_private_import(tmp_path):
    """The checks above can fail: a planted module that breaks both rules is caught."""
    root = tmp_path / "gatedrnn"
    (root / "models").mkdir(parents=True)
    bad = root / "models" / "bad.py"
    bad.write_text("from ..experiments.compare import compare\nfrom ..cells.base import _hidden\n")
    global SRC
    saved, SRC = SRC, root
    try:
        with pytest.raises(AssertionError, match="sits below experiments"):
            test_imports_point_down_the_layers(bad)
        with pytest.raises(AssertionError, match="_hidden"):
            test_no_module_imports_another_modules_private_names(bad)
    finally:
        SRC = saved
