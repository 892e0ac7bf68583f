"""Each step's elementwise work as one compiled pass (the C++ files of ``csrc/``), where a C++
compiler is at hand.

    kernels = compiled.pointwise()  # the extension module, or None: the eager loops run instead

The extension is built with ``torch.utils.cpp_extension.load`` at first use (tens of seconds,
once per machine: the build is cached in torch's extension folder, ``TORCH_EXTENSIONS_DIR``,
under a name that carries a hash of the source, the flags and the processor, so a home folder
shared between machines of different processors never loads a build made for another).
``GATEDRNN_CPP=0`` (or ``ENABLED = False``) turns it off; a failed build (no compiler, no
headers) is logged once (logger ``gatedrnn``, level WARNING) and the eager loops run, as they do everywhere the
kernels do not apply (CUDA, half precision, autocast). benchmarks/RESULTS.md has what it pays.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import platform
import threading
import time
from pathlib import Path

import torch

ENABLED = os.environ.get("GATEDRNN_CPP", "1") != "0"
CSRC = Path(__file__).with_name("csrc")
#: every kernel file is one source of the one extension (each registers its functions through
#: ``csrc/common.h``; ``csrc/module.cpp`` makes the module)
SOURCES = sorted(CSRC.glob("*.cpp"))
#: -ffast-math lets gcc call glibc's vector exp and tanh; it is a compiler flag only (not given to
#: the linker, which would put code setting flush-to-zero into the library)
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
DTYPES = (torch.float32, torch.float64)
#: a build lock older than this was left by a build that was interrupted (Ctrl-C, a kill), not
#: held by one running (a build takes about a minute on an idle machine): it is removed
STALE_LOCK_S = 20 * 60

_lock = threading.Lock()
_state: dict = {}


def _processor() -> str:
    """What ``-march=native`` depends on: the processor's model and flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def build_name() -> str:
    h = hashlib.sha256()
    for path in sorted(CSRC.glob("*.[ch]*")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    for part in (" ".join(CFLAGS + LDFLAGS).encode(), _processor().encode(),
                 torch.__version__.encode()):
        h.update(part)
    return f"gatedrnn_pointwise_{h.hexdigest()[:16]}"


def pointwise():
    """The compiled module, built or loaded once per process; ``None`` where it is off or cannot
    be built (the reason, once, as a warning)."""
    if not ENABLED:
        return None
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" not in _state:
            _state["module"] = _load()
    return _state["module"]


def prebuilt():
    """The compiled module where this process has it or an earlier build is on disk (imported, in
    milliseconds), else ``None``, without building it: for a caller that runs where the build
    (a minute or two) would come out of a user's time budget, such as the language model's
    dropout in ``gatedrnn train``. The disk is looked at once per process."""
    if not ENABLED:
        return None
    if "module" not in _state and "looked" not in _state:
        with _lock:
            if "module" not in _state and "looked" not in _state:
                _state["looked"] = True
                try:
                    module = _built(build_name()) if platform.system() == "Linux" else None
                except Exception:  # noqa: BLE001 - a build that cannot be imported: as if none
                    module = None
                if module is not None:
                    _state["module"] = module
    return _state.get("module")


def _folder(name: str) -> Path:
    """Where the extension is built (given to ``cpp_extension.load``, so that ``_built`` and the
    lock look where the build tool writes)."""
    from torch.utils import cpp_extension

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()) / name


def _built(name: str):
    """The module of an earlier build, imported without running the build tool (a process that
    only uses the kernels pays milliseconds, not the second ``ninja`` takes to check the build)."""
    path = _folder(name) / f"{name}.so"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load():
    if platform.system() != "Linux":  # the flags above are gcc's and clang's on Linux
        return None
    try:
        from torch.utils import cpp_extension

        name = build_name()
        module = _built(name)
        if module is not None:
            return module
        if _locked(_folder(name) / "lock"):
            return None
        logging.getLogger("gatedrnn").info("building the compiled elementwise kernels (once per machine)")
        folder = _folder(name)
        folder.mkdir(parents=True, exist_ok=True)
        # copies of the flags: the build tool appends its own to the lists it is given
        return cpp_extension.load(name=name, sources=[str(p) for p in SOURCES], extra_cflags=list(CFLAGS),
                                  extra_ldflags=list(LDFLAGS), build_directory=str(folder), verbose=False)
    except Exception as e:  # noqa: BLE001 - any failure to build means: run the eager loops
        reason = str(e).splitlines()[0] if str(e) else ""
        logging.getLogger("gatedrnn").warning(
            "the compiled elementwise kernels could not be built (%s: %s); the eager loops run instead "
            "(GATEDRNN_CPP=0 skips the attempt)", type(e).__name__, reason)
        return None


def _locked(lock: Path) -> bool:
    """Whether another process is building the kernels now: this one then runs the eager loops
    rather than wait (torch's build tool waits on a lock for as long as it exists, so a lock left
    by an interrupted build would hang every later run). A lock older than ``STALE_LOCK_S`` is
    such a leftover: it is removed, with a warning, and this process builds."""
    try:
        age = time.time() - lock.stat().st_mtime
    except OSError:
        return False  # no lock
    log = logging.getLogger("gatedrnn")
    if age < STALE_LOCK_S:
        log.info("another process is building the compiled elementwise kernels (%s); the eager loops run in this one",
                 lock)
        return True
    try:
        lock.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        return True  # a lock this process cannot remove: not waited on either
    log.warning("removed a build lock left by an interrupted build %.0f minutes ago (%s)", age / 60, lock)
    return False


def usable(x) -> bool:
    """Whether the kernels take tensors like ``x``: on the CPU, float32 or float64 (autocast never
    reaches the specialised loops that call this: ``capability.supports`` sends it elsewhere)."""
    return ENABLED and x.device.type == "cpu" and x.dtype in DTYPES and pointwise() is not None
