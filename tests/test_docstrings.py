"""What ``help()`` shows on everything gatedrnn exports: a docstring of its own that names every
argument a user passes."""
import importlib
import inspect
import re

import pytest

PACKAGES = ["gatedrnn", "gatedrnn.training", "gatedrnn.reference", "gatedrnn.models", "gatedrnn.data"]


def exports():
    seen = {}
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and id(obj) not in seen:
                seen[id(obj)] = pytest.param(obj, id=f"{package}.{name}")
    return list(seen.values())


def own_doc(obj) -> str:
    """The object's own docstring: not inherited (``nn.Module``'s), not a dataclass's generated one."""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        if doc.startswith(f"{obj.__name__}("):  # @dataclass writes the signature when there is no docstring
            return ""
        return inspect.cleandoc(doc)
    return inspect.getdoc(inspect.unwrap(obj)) or ""


def arguments(fn) -> list[str]:
    params = inspect.signature(inspect.unwrap(fn)).parameters.values()
    return [p.name for p in params if p.name not in ("self", "cls") and not p.name.startswith("_")
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def callables_to_document(obj):
    """The object itself (a function) or its public methods defined in gatedrnn (a class)."""
    if inspect.isfunction(obj):
        return [(obj.__name__, obj)]
    out = []
    for name, member in vars(obj).items():
        fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
        if inspect.isfunction(fn) and not name.startswith("_"):
            out.append((f"{obj.__name__}.{name}", fn))
    return out


#: the modules and cells of the torch engine, with torch.nn's signatures, are documented and
#: checked in tests/torch_engine (their arguments are torch.nn's); here, only that they have a docstring
TORCH_ENGINE = "gatedrnn.torch_engine"


def test_every_package_is_covered():
    assert len(exports()) > 40


@pytest.mark.parametrize("obj", exports())
def test_an_export_has_a_docstring_of_its_own(obj):
    doc = own_doc(obj)
    first = doc.split("\n\n")[0]
    assert len(doc) >= 30, f"{obj.__qualname__}: docstring {doc!r} (expected a sentence a user can learn from)"
    assert first.rstrip().endswith((".", ":", ")")) or "``" in first, f"{obj.__qualname__}: summary {first!r}"


@pytest.mark.parametrize("obj", [p for p in exports() if not p.values[0].__module__.startswith(TORCH_ENGINE)])
def test_every_argument_is_named_in_the_docstring(obj):
    missing = []
    for qualname, fn in callables_to_document(obj):
        doc = inspect.getdoc(inspect.unwrap(fn)) or ""
        if not doc:
            missing.append(f"{qualname}: no docstring")
            continue
        if qualname.endswith(".__init__"):
            doc += "\n" + own_doc(obj)
        for arg in arguments(fn):
            if not re.search(rf"\b{re.escape(arg)}\b", doc):
                missing.append(f"{qualname}({arg})")
    assert not missing, f"not documented: {', '.join(missing)}"
