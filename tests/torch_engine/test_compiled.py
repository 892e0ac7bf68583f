"""The compiled elementwise kernels (torch_engine/compiled.py, csrc/pointwise.cpp, csrc/minrnn.cpp)
against the eager loops they stand in for: outputs, final states and every gradient, float64 and
float32, for each configuration of the loop cases whose loop runs them and each option value the
loops declare, with every kind of keep mask. Skipped
where no C++ compiler can build them (the eager loops then run everywhere, tested by
test_loops.py)."""
import sys
import warnings

import pytest
import torch

from gatedrnn.cells import CELLS
from gatedrnn.torch_engine import capability, compiled
from gatedrnn.torch_engine.loops.gru import GRULoop
from gatedrnn.torch_engine.loops.indrnn import IndRNNLoop
from gatedrnn.torch_engine.loops.lstm import LSTMLoop
from gatedrnn.torch_engine.loops.minrnn import MinRNNLoop
from gatedrnn.torch_engine.loops import lstm as lstm_loop
from gatedrnn.torch_engine.loops import mogrifier
from gatedrnn.torch_engine.loops.mogrifier import MogrifierLoop

from .compiled_kernels import Spy, kernels  # noqa: F401 (kernels: a fixture)
from .loop_cases import CASES, MASK_CASES, MASK_KINDS, _id, make_inputs, make_masks, outputs_and_grads, run_fast

#: the loops that call the kernels, and the configurations they do it for (the LSTM family, with
#: layer norm through csrc/layernorm.cpp; the Mogrifier's LSTM step; every GRU
#: configuration, whose layer norm is outside the step's pass; minGRU, minLSTM and IndRNN: the
#: whole sequence in one call, csrc/minrnn.cpp)
USES_KERNELS = {LSTMLoop: lambda cell: True, MogrifierLoop: lambda cell: True,
                GRULoop: lambda cell: True, MinRNNLoop: lambda cell: True, IndRNNLoop: lambda cell: True}


def _uses(case):
    cell = make_inputs(*case)[0]
    loop = capability.loop_for(cell)
    return loop in USES_KERNELS and USES_KERNELS[loop](cell)


def declared_cases():
    """Each cell a kernel-calling loop declares, at its defaults and with each option the loop
    declares at each of the cell's sample values (from the loops' ``handles``)."""
    for loop in USES_KERNELS:
        for name, declared in loop.handles.items():
            yield name, {}
            for key in declared:
                for value in CELLS[name].option_samples.get(key, ()):
                    yield name, {key: value}


def _unique(cases):
    seen, out = set(), []
    for case in cases:
        if _id(case) not in seen and _uses(case):
            seen.add(_id(case))
            out.append(case)
    return out


KERNEL_CASES = _unique([*CASES, *declared_cases()])
KERNEL_MASK_CASES = _unique([*MASK_CASES, *((name, {}) for loop in USES_KERNELS for name in loop.handles)])


def _both(case, kind, kernels, monkeypatch, dtype=torch.float64, size=None):
    cell, params, x, state = make_inputs(*case, **(size or {}))
    params, keep = make_masks(kind, cell, params, x, state=state) if kind else (params, None)
    cast = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    params, x, state = {k: cast(v) for k, v in params.items()}, cast(x), tuple(cast(s) for s in state)
    keep = None if keep is None else tuple(cast(k) for k in keep)
    run = lambda c, p, x_, s: run_fast(c, p, x_, s, keep)  # noqa: E731
    spy = Spy(kernels)
    monkeypatch.setattr(compiled, "pointwise", lambda: spy)
    got = outputs_and_grads(run, cell, params, x, state)
    assert any(n.endswith("forward") for n in spy.names) and any(n.endswith("backward") for n in spy.names), (
        f"the compiled kernels did not run both ways (called: {sorted(spy.names)})")
    with torch.no_grad():
        y_inf, _ = run_fast(cell, params, x, state, keep)
    monkeypatch.setattr(compiled, "ENABLED", False)
    calls = spy.calls
    want = outputs_and_grads(run, cell, params, x, state)
    assert spy.calls == calls, "the eager loop called the kernels"
    return got, want, y_inf


def _close(got, want, rtol, atol):
    (out_c, g_c), (out_e, g_e) = got, want
    for a, b in zip(out_c, out_e):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    assert set(g_c) == set(g_e)
    for key in g_e:
        assert (g_c[key] is None) == (g_e[key] is None), key
        if g_e[key] is not None:
            torch.testing.assert_close(g_c[key], g_e[key], rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("case", KERNEL_CASES, ids=[_id(c) for c in KERNEL_CASES])
def test_matches_the_eager_loop(case, kernels, monkeypatch):
    got, want, y_inf = _both(case, None, kernels, monkeypatch)
    _close(got, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-13, atol=1e-14)  # no-grad forward


@pytest.mark.parametrize("case", KERNEL_MASK_CASES, ids=[_id(c) for c in KERNEL_MASK_CASES])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_match_the_eager_loop(case, kind, kernels, monkeypatch):
    if "state-dropout" in kind and not make_inputs(*case)[0].has_recurrent_product:
        pytest.skip(f"{case[0]} has no recurrent state for state dropout to act on")
    got, want, y_inf = _both(case, kind, kernels, monkeypatch)
    _close(got, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-13, atol=1e-14)


FLOAT32_CASES = [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}),
                 ("lstm", {"layer_norm": True}), ("peephole", {"layer_norm": True}),
                 *[(name, {}) for loop in (MinRNNLoop, IndRNNLoop) for name in loop.handles]]


@pytest.mark.parametrize("case", FLOAT32_CASES, ids=_id)
@pytest.mark.parametrize("kind", [None, "zoneout"])
def test_float32_matches_the_eager_loop(case, kind, kernels, monkeypatch):
    got, want, _ = _both(case, kind, kernels, monkeypatch, dtype=torch.float32)
    _close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {})], ids=_id)
@pytest.mark.parametrize("kind", [None, "zoneout"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("add_in_kernel", [True, False], ids=["kernel-adds", "product-adds"])
def test_the_kernel_or_the_product_adds_the_input(case, kind, dtype, add_in_kernel, kernels, monkeypatch):
    """Each step's input pre-activation added by the compiled step (``ADD_IN_KERNEL``, the default)
    or by the product (oneDNN's post-op in float32 where it runs): both match the eager loop, and
    the kernel is given the input pre-activation exactly when it is to add it."""
    monkeypatch.setattr(lstm_loop, "ADD_IN_KERNEL", add_in_kernel)
    monkeypatch.setattr(lstm_loop, "SEQUENCE", False)  # one call a step, each given its input or not
    given = []
    forward = kernels.lstm_forward

    class Recording:
        def __getattr__(self, name):
            return getattr(kernels, name)

        @staticmethod
        def lstm_forward(a, ax, *rest):
            given.append(ax is not None)
            return forward(a, ax, *rest)

    got, want, y_inf = _both(case, kind, Recording(), monkeypatch, dtype=dtype)
    assert given and set(given) == {add_in_kernel}
    _close(got, want, rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=1e-13 if dtype == torch.float64 else 1e-6)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-12 if dtype == torch.float64 else 1e-5,
                               atol=1e-13 if dtype == torch.float64 else 1e-6)  # no-grad: the gates in scratch


@pytest.mark.parametrize("case", [("lstm", {}), ("peephole", {}), ("cifg", {}),
                                  ("lstm", {"bias": False, "forget_bias": 1.0})], ids=_id)
@pytest.mark.parametrize("kind", [None, "zoneout", "state-dropout"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("sequence", [True, False], ids=["one-call", "per-step"])
def test_the_forward_in_one_call_or_one_a_step(case, kind, dtype, sequence, kernels, monkeypatch):
    """``SEQUENCE``: a forward without keep masks or state dropout runs every step in one kernel
    call (``lstm_sequence_forward``, its products called from C++: oneDNN's on the packed weight in
    float32, every weight packed here, MKL's in float64), any other one call a step; both match the
    eager loop, training and no-grad."""
    from gatedrnn.torch_engine import products

    monkeypatch.setattr(lstm_loop, "SEQUENCE", sequence)
    monkeypatch.setattr(products, "ONEDNN_MIN_WEIGHT", 0)
    if dtype == torch.float32 and products.Product(torch.ones(4, 4), 3).packed is not None and not kernels.mogrify_onednn():
        pytest.skip("this torch's oneDNN product cannot be called from the kernel (another signature)")
    names = []

    class Recording:
        def __getattr__(self, name):
            names.append(name)
            return getattr(kernels, name)

    got, want, y_inf = _both(case, kind, Recording(), monkeypatch, dtype=dtype)
    assert ("lstm_sequence_forward" in names) == (sequence and kind is None)
    assert ("lstm_forward" in names) == (not sequence or kind is not None)
    tol = dict(rtol=1e-12, atol=1e-13) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    _close(got, want, **tol)
    torch.testing.assert_close(y_inf, got[0][0], **tol)


@pytest.mark.parametrize("case", [("lstm", {"layer_norm": True}), ("cifg", {"layer_norm": True}), ("lstm", {}),
                                  ("peephole", {})], ids=_id)
@pytest.mark.parametrize("kind", [None, "state-dropout", "zoneout"])
def test_rows_split_across_threads_match_the_eager_loop(case, kind, kernels, monkeypatch):
    """A batch large enough for the kernels to split its rows across two threads (each thread then
    keeps its own sums of the layer-norm gains' gradients, added up after the loop, and its own row
    of scratch for a step's sum with the input and, in the no-grad forward, for the gates)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got, want, y_inf = _both(case, kind, kernels, monkeypatch, size=dict(T=3, B=64, I=8, H=128))
    finally:
        torch.set_num_threads(threads)
    _close(got, want, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-13, atol=1e-14)


def test_off_switch_and_what_it_does_not_take(kernels, monkeypatch):
    x = torch.zeros(2, 3, 4)
    assert compiled.usable(x)
    assert not compiled.usable(x.to(torch.bfloat16))
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert not compiled.usable(x) and compiled.pointwise() is None


def test_a_failed_build_falls_back_logged_once(monkeypatch, caplog):
    from torch.utils import cpp_extension

    def fail(**kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(compiled, "ENABLED", True)  # a build is tried, also under GATEDRNN_CPP=0
    monkeypatch.setattr(compiled, "_state", {})
    monkeypatch.setattr(compiled, "_built", lambda name: None)
    monkeypatch.setattr(cpp_extension, "load", fail)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # logged, not a Python warning
        with caplog.at_level("WARNING", logger="gatedrnn"):
            assert compiled.pointwise() is None
            assert compiled.pointwise() is None and not compiled.usable(torch.zeros(1))  # decided once
    assert [r.getMessage() for r in caplog.records if "no compiler here" in r.getMessage()] != []
    assert len([r for r in caplog.records if "could not be built" in r.getMessage()]) == 1


@pytest.mark.skipif(not compiled.usable(torch.zeros(1)), reason="the compiled kernels are off or cannot be built here")
def test_a_build_is_found_again_without_the_build_tool():
    """Once built, a process imports the module from the folder the build wrote (``_built``), so it
    neither runs the build tool nor looks for a lock elsewhere; building leaves the flags, and so
    the build's name, as they were."""
    flags = (list(compiled.CFLAGS), list(compiled.LDFLAGS))
    name = compiled.build_name()
    assert (compiled._folder(name) / f"{name}.so").is_file()
    assert compiled._built(name) is not None
    assert (compiled.CFLAGS, compiled.LDFLAGS) == flags and compiled.build_name() == name


@pytest.mark.skipif(sys.platform != "linux", reason="the kernels are built on Linux only")
@pytest.mark.parametrize("minutes_old, builds", [(1, False), (compiled.STALE_LOCK_S / 60 + 1, True)])
def test_a_build_lock_is_not_waited_on_and_a_stale_one_is_removed(minutes_old, builds, tmp_path, monkeypatch, caplog):
    """A lock held by a running build: this process runs the eager loops instead of waiting. A
    lock left by an interrupted build (older than any build takes): removed, and the build runs."""
    import os

    from torch.utils import cpp_extension

    name = compiled.build_name()
    lock = tmp_path / name / "lock"
    lock.parent.mkdir()
    lock.write_text("")
    then = lock.stat().st_mtime - minutes_old * 60
    os.utime(lock, (then, then))
    calls = []
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "ENABLED", True)
    monkeypatch.setattr(compiled, "_state", {})
    monkeypatch.setattr(cpp_extension, "load", lambda **kwargs: calls.append(kwargs) or "built")
    with caplog.at_level("INFO", logger="gatedrnn"):
        got = compiled.pointwise()
    assert (got, len(calls), lock.exists()) == (("built", 1, False) if builds else (None, 0, True))
    said = " ".join(r.getMessage() for r in caplog.records)
    assert ("removed a build lock" in said) if builds else ("another process is building" in said)


# -- the Mogrifier's rounds (csrc/mogrifier.cpp) ------------------------------------------------
def _mogrifier_configs():
    """The Mogrifier at its defaults and with each sample value of each option its loop declares
    (``MogrifierLoop.handles``; a value the loop leaves to another loop, ``rounds=0``, is skipped),
    and with ``rank`` and an even ``rounds`` together (``h`` last)."""
    cls = type(make_inputs("mogrifier", {})[0])
    declared = MogrifierLoop.handles["mogrifier"]
    out = [{}]
    for key, allowed in declared.items():
        out += [{key: v} for v in cls.option_samples[key] if allowed is ... or v in allowed]
    out.append({"rounds": 2, "rank": cls.option_samples["rank"][0]})
    out.append({"rounds": 4})  # every count of rounds up to the default's 5
    return [o for o in out if capability.loop_for(make_inputs("mogrifier", o)[0]) is MogrifierLoop]


#: with a step's rounds in one call (``step``): every configuration without masks; every kind of
#: mask on the defaults (odd rounds: x last), on an even ``rounds`` with ``rank`` (h last, through
#: state dropout's mask into the product) and on one round (h not gated). One call per round (the
#: fallback, ``mogrifier.STEP`` off): the same configurations with no mask and with zoneout and
#: state dropout together.
MOG_CASES = [(o, None, True) for o in _mogrifier_configs()] + [
    (o, kind, True) for o in ({}, {"rounds": 2, "rank": 2}, {"rounds": 1}) for kind in MASK_KINDS] + [
    (o, kind, False) for o in ({}, {"rounds": 2, "rank": 2}, {"rounds": 1}) for kind in (None, "zoneout+state-dropout")]


@pytest.mark.parametrize("options,kind,step", MOG_CASES,
                         ids=[_id(("mogrifier", o)) + f"-{k}-" + ("step" if s else "rounds") for o, k, s in MOG_CASES])
def test_mogrifier_rounds_match_eager_and_reference(options, kind, step, kernels, monkeypatch):
    """The rounds' kernels against the eager rounds and the NumPy reference, float64: outputs, final
    states and every gradient; the kernel ran once per step (``step``: a step's rounds and their
    products in one call) or once per round and step, forward and backward."""
    from .test_capability import _reference

    monkeypatch.setattr(mogrifier, "STEP", step)
    case = ("mogrifier", options)
    counts = {"mogrify_forward": 0, "mogrify_backward": 0, "mogrify_step_forward": 0, "mogrify_step_backward": 0}
    real = kernels

    class Counting:
        def __getattr__(self, name):
            fn = getattr(real, name)
            if name not in counts:
                return fn

            def call(*args):
                counts[name] += 1
                return fn(*args)
            return call

    got, want, y_inf = _both(case, kind, Counting(), monkeypatch)
    cell, params, x, state = make_inputs(*case)
    T = x.shape[0]
    per_call = 1 if step else cell.rounds  # kernel calls a step, the training forward's and the no-grad one's
    assert counts["mogrify_step_forward" if step else "mogrify_forward"] == 2 * T * per_call
    assert counts["mogrify_step_backward" if step else "mogrify_backward"] == T * per_call
    assert counts["mogrify_forward" if step else "mogrify_step_forward"] == 0
    assert counts["mogrify_backward" if step else "mogrify_step_backward"] == 0
    _close(got, want, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-13, atol=1e-14)
    params, keep = make_masks(kind, cell, params, x) if kind else (params, None)
    mask_hh = params.pop("mask_hh", None)
    if keep is not None:  # a state not mixed: keep nothing of it
        keep = tuple(torch.zeros(T, 1, 1, dtype=x.dtype) if k is None else k for k in keep)
    gen = torch.Generator().manual_seed(1)  # outputs_and_grads's loss weights, in its order
    gy = torch.randn(got[0][0].shape, generator=gen, dtype=torch.float64)
    gs = tuple(torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in got[0][1:])
    out_ref, g_ref = _reference(cell, params, x, state, gy, gs, keep, mask_hh)
    for a, b in zip(got[0], out_ref):
        torch.testing.assert_close(a, torch.from_numpy(b), rtol=1e-10, atol=1e-12)
    for key, g in g_ref.items():
        torch.testing.assert_close(got[1][key], torch.from_numpy(g), rtol=1e-9, atol=1e-11, msg=key)


@pytest.mark.parametrize("kind", [None, "zoneout+state-dropout"])
def test_mogrifier_float32_matches_the_eager_loop(kind, kernels, monkeypatch):
    got, want, _ = _both(("mogrifier", {}), kind, kernels, monkeypatch, dtype=torch.float32)
    _close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("onednn_call", [True, False], ids=["step", "no-onednn-call"])
@pytest.mark.parametrize("options,kind", [({}, None), ({"rounds": 2, "rank": 2}, "zoneout+state-dropout"),
                                          ({"rounds": 1}, "state-dropout")], ids=lambda v: str(v))
def test_mogrifier_step_on_onednn_matches_the_eager_loop(options, kind, onednn_call, kernels, monkeypatch):
    """Every weight on oneDNN (``products.ONEDNN_MIN_WEIGHT`` lowered to 1, float32): the step's
    rounds in one call, their products oneDNN's ``_linear_pointwise`` (and its fused add) called
    from C++ on the packed weights, against the eager loop on the same products; where the kernel
    cannot call oneDNN (``mogrify_onednn`` false) the rounds run one call each."""
    from gatedrnn.torch_engine import products

    monkeypatch.setattr(products, "ONEDNN_MIN_WEIGHT", 1)
    if products.Product(torch.ones(4, 4), 3).packed is None:
        pytest.skip("no oneDNN product here (or GATEDRNN_ONEDNN=0)")
    if onednn_call and not kernels.mogrify_onednn():
        pytest.skip("this torch's oneDNN product cannot be called from the kernel (another signature)")
    names = []

    class Watching:
        def __getattr__(self, name):
            if name == "mogrify_onednn":
                return lambda: onednn_call and kernels.mogrify_onednn()
            names.append(name)
            return getattr(kernels, name)

    got, want, _ = _both(("mogrifier", options), kind, Watching(), monkeypatch, dtype=torch.float32)
    _close(got, want, rtol=1e-5, atol=1e-6)
    step = {"mogrify_step_forward", "mogrify_step_backward"}
    assert step <= set(names) if onednn_call else not step & set(names), sorted(set(names))


# -- every pass with its rows split across threads ------------------------------------------------
@pytest.fixture
def split_rows(kernels):
    """Two threads and a parallel grain of one element (``csrc/common.h``): every kernel pass splits
    its rows across the threads, however small the batch."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    old = kernels.set_parallel_grain(1)
    yield
    kernels.set_parallel_grain(old)
    torch.set_num_threads(threads)


SPLIT_CASES = [*[(c, None) for c in KERNEL_CASES], *[(("mogrifier", o), k) for o, k, _ in MOG_CASES if k]]


@pytest.mark.parametrize("case,kind", SPLIT_CASES, ids=[f"{_id(c)}-{k}" for c, k in SPLIT_CASES])
def test_every_pass_split_across_threads_matches_the_eager_loop(case, kind, kernels, split_rows, monkeypatch):
    got, want, y_inf = _both(case, kind, kernels, monkeypatch)
    _close(got, want, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(y_inf, got[0][0], rtol=1e-13, atol=1e-14)


def test_the_parallel_grain_is_checked(kernels):
    with pytest.raises(RuntimeError, match="at least 1 element, got 0"):
        kernels.set_parallel_grain(0)
