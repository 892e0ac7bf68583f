"""The Triton engine (torch_engine/triton/) under Triton's interpreter, on CPU, in float64:
outputs, final states and every gradient against the fused engine and the autograd loop, for
every cell and option it declares (cases generated from ``HANDLES``), with zoneout, padding and
state dropout; and its one-line refusals of everything else.

The interpreter is chosen when the kernels are decorated, so ``TRITON_INTERPRET=1`` is set (for
this module only) before the engine's kernels are first imported. Where they were already
imported for a GPU in this process, these tests skip; tests/torch_engine/test_triton_cuda.py
covers the GPU.
"""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from gatedrnn.cells import CELLS, make_cell  # noqa: E402
from gatedrnn.torch_engine import triton as engine  # noqa: E402
from gatedrnn.torch_engine.autograd_loop import autograd_layer  # noqa: E402
from gatedrnn.torch_engine.functional import run_layer  # noqa: E402

T, B, I, H = 4, 3, 4, 5
MASK_KINDS = ("zoneout", "zoneout-h", "expectation", "padding", "state-dropout", "zoneout+state-dropout")


@pytest.fixture(autouse=True, scope="module")
def interpreter():
    mp = pytest.MonkeyPatch()
    mp.setenv("TRITON_INTERPRET", "1")
    common = sys.modules.get("gatedrnn.torch_engine.triton.common")
    if common is not None and not common.INTERPRETED:
        pytest.skip("the Triton kernels were built for a GPU in this process")
    yield
    mp.undo()


def _valid(name, options):
    try:
        make_cell(name, **options)
    except ValueError:
        return False
    return True


def declared_cases():
    """Each declared cell at its defaults, then each declared value of each option, one at a time."""
    cases = []
    for name, options in engine.HANDLES.items():
        cases.append((name, {}))
        for key, handled in options.items():
            for value in handled.values:
                if value != CELLS[name].options[key] and _valid(name, {key: value}):
                    cases.append((name, {key: value}))
    return cases


def mask_cases():
    """Each declared cell at its defaults; the Mogrifier (slow on the interpreter) at its fewest
    declared odd and even rounds: the two places its state dropout's product input is written."""
    cases = [(name, {}) for name in engine.HANDLES if name != "mogrifier"]
    rounds = [r for r in engine.HANDLES["mogrifier"]["rounds"].values if r]
    return cases + [("mogrifier", {"rounds": min(r for r in rounds if r % 2 == k)}) for k in (1, 0)]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def make_inputs(name, options, dtype=torch.float64, seed=0):
    cell = make_cell(name, **options)
    gen = torch.Generator().manual_seed(seed)
    params = {s.name: ((torch.rand(s.shape, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(H)).to(dtype)
              for s in cell.param_spec(I, H)}
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64).to(dtype)
    state = tuple((torch.randn(B, n, generator=gen, dtype=torch.float64) * 0.5).to(dtype) for n in cell.state_sizes(H))
    return cell, params, x, state


def make_masks(kind, cell, params, x, seed=2):
    """``(params, keep)``: zoneout's random 0/1 keep masks (on every state element, or on ``h``
    alone), their expectation in evaluation, a padded batch's ``(T, B, 1)`` masks, or state
    dropout's ``mask_hh`` (alone or with zoneout)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = cell.state_sizes(H)
    keep = None
    if "zoneout" in kind:
        keep = tuple((torch.rand(T, B, n, generator=gen) < 0.3).double() for n in sizes)
        if kind == "zoneout-h":
            keep = (keep[0],) + (None,) * (len(sizes) - 1)
    elif kind == "expectation":
        keep = tuple(torch.full((T, 1, 1), 0.25, dtype=torch.float64) for _ in sizes)
    elif kind == "padding":
        valid = (torch.arange(T)[:, None] < torch.tensor([T, T - 2, 1])[None, :]).double()[..., None]
        keep = tuple(1.0 - valid for _ in sizes)
    if "state-dropout" in kind:
        mask = (torch.rand(B, params["weight_hh"].shape[1], generator=gen) >= 0.4).double() / 0.6
        params = {**params, "mask_hh": mask}
    return params, keep


def outputs_and_grads(fn, cell, params, x, state, seed=1):
    """``fn``'s outputs and the gradients of a random projection of them w.r.t. every input."""
    consts = {k: v for k, v in params.items() if k.startswith("mask_")}  # not parameters
    params = {k: v for k, v in params.items() if k not in consts}
    leaves = [t.clone().requires_grad_() for t in (*params.values(), x, *state)]
    p = {**dict(zip(params, leaves[: len(params)])), **consts}
    y, state_n = fn(cell, p, leaves[len(params)], tuple(leaves[len(params) + 1 :]))
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)).sum() for o in (y, *state_n))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [*params, "x", *(f"state{k}" for k in range(len(state)))]
    return [y.detach(), *(s.detach() for s in state_n)], dict(zip(names, grads))


def triton_path(keep=None):
    return lambda c, p, x, s: engine.run(c, p, x, s, keep)


def twins(keep=None):
    yield "fused", lambda c, p, x, s: run_layer(c, p, x, s, keep, engine="fused")
    yield "autograd", lambda c, p, x, s: autograd_layer(c, p, x, s, keep)


def assert_matches(cell, params, x, state, keep=None):
    out, grads = outputs_and_grads(triton_path(keep), cell, params, x, state)
    for twin_name, twin in twins(keep):
        out_ref, grads_ref = outputs_and_grads(twin, cell, params, x, state)
        for a, b in zip(out, out_ref):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13, msg=f"output vs {twin_name}")
        assert set(grads) == set(grads_ref)
        for key, ref in grads_ref.items():
            assert grads[key] is not None, key
            torch.testing.assert_close(grads[key], ref, rtol=1e-11, atol=1e-13, msg=f"d{key} vs {twin_name}")
    return out


@pytest.mark.parametrize("case", declared_cases(), ids=_id)
def test_matches_fused_and_autograd(case):
    cell, params, x, state = make_inputs(*case)
    assert engine.refusal(cell, params, x, None, state) is None
    assert_matches(cell, params, x, state)


@pytest.mark.parametrize("case", mask_cases(), ids=_id)
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_match_fused_and_autograd(case, kind):
    """Zoneout (random keep masks, on every state element or on h alone, and their expectation),
    a padded batch's masks and state dropout (``mask_hh``), alone and together."""
    cell, params, x, state = make_inputs(*case)
    params, keep = make_masks(kind, cell, params, x)
    out = assert_matches(cell, params, x, state, keep)
    with torch.no_grad():  # inference: the same loop without saving for a backward
        y, state_n = engine.run(cell, params, x, state, keep)
    for a, b in zip((y, *state_n), out):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", [n for n, o in engine.HANDLES.items() if True in o["layer_norm"].values])
def test_layer_norm_with_masks(name):
    """Layer norm with zoneout and state dropout together, for each cell declaring layer norm."""
    cell, params, x, state = make_inputs(name, {"layer_norm": True})
    params, keep = make_masks("zoneout+state-dropout", cell, params, x)
    assert_matches(cell, params, x, state, keep)


@pytest.mark.parametrize("name", list(engine.HANDLES))
def test_float32(name):
    """float32 (what a GPU runs) against the float64 result, within float32 rounding."""
    cell, params, x, state = make_inputs(name, {})
    out64, g64 = outputs_and_grads(triton_path(), cell, params, x, state)
    cast = lambda ts: [t.float() for t in ts]  # noqa: E731
    p32 = dict(zip(params, cast(params.values())))
    out32, g32 = outputs_and_grads(triton_path(), cell, p32, x.float(), tuple(cast(state)))
    assert out32[0].dtype == torch.float32
    for a, b in zip(out32, out64):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)
    for key in g64:
        torch.testing.assert_close(g32[key].double(), g64[key], rtol=1e-4, atol=1e-5, msg=key)


def test_second_backward_and_double_backward():
    """The backward leaves the saved buffers as they were (a retained graph runs it again), and a
    graph of the backward goes through the autograd twin."""
    cell, params, x, state = make_inputs("lstm", {})
    w = params["weight_hh"].requires_grad_()
    y, _ = engine.run(cell, params, x, state)
    (g1,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g2,) = torch.autograd.grad(y.sum(), w, retain_graph=True)
    (g3,) = torch.autograd.grad(y.sum(), w, create_graph=True)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    torch.testing.assert_close(g3, g1, rtol=1e-12, atol=1e-13)
    assert g3.requires_grad
    (gg,) = torch.autograd.grad(g3.square().sum(), w)
    y_ref, _ = autograd_layer(cell, {**params, "weight_hh": w}, x, state)
    (g_ref,) = torch.autograd.grad(y_ref.sum(), w, create_graph=True)
    torch.testing.assert_close(gg, torch.autograd.grad(g_ref.square().sum(), w)[0], rtol=1e-11, atol=1e-13)


def test_empty_sequence_and_batch():
    cell, params, x, state = make_inputs("lstm", {})
    y, state_n = engine.run(cell, params, x[:0], state)
    assert y.shape == (0, B, H) and all(torch.equal(a, b) for a, b in zip(state_n, state))
    y, state_n = engine.run(cell, params, x[:, :0], tuple(s[:0] for s in state))
    assert y.shape == (T, 0, H)


# -- through run_layer and the modules --------------------------------------------------------
@pytest.mark.parametrize("name", list(engine.HANDLES))
def test_modules(name):
    """``engine="triton"`` on a module: a 2-layer bidirectional stack training with zoneout, state
    dropout and weight drop gives the fused engine's outputs, states and gradients (the masks drawn
    from the same seed); ``engine="auto"`` never takes it on CPU."""
    from gatedrnn.torch_engine import layer

    options = {"rounds": 2} if name == "mogrifier" else {}
    torch.manual_seed(0)
    module = layer(name, I, H, num_layers=2, bidirectional=True, dtype=torch.float64, zoneout=0.2,
                   dropout_state=0.3, weight_drop=0.2, **options)
    x = torch.randn(T, B, I, dtype=torch.float64)
    results = {}
    for e in ("fused", "triton"):
        module.engine = e
        module.zero_grad()
        x_ = x.clone().requires_grad_()
        torch.manual_seed(1)
        y, state = module(x_)
        state = state if isinstance(state, tuple) else (state,)
        (y.square().sum() + sum(s.sum() for s in state)).backward()
        results[e] = [y, *state, x_.grad, *(p.grad for p in module.parameters())]
    for a, b in zip(results["triton"], results["fused"]):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)
    module.engine = "auto"
    assert module.resolve_engine(x) in ("torch", "fused")


def test_auto_takes_it_only_on_a_cuda_device(monkeypatch):
    """``usable`` (what ``engine="auto"`` asks): a CUDA tensor of a declared dtype and cell, unless
    asked for (``GATEDRNN_TRITON=1``, ``AUTO``); never a CPU tensor, even under the interpreter. A
    stand-in for a CUDA tensor: only its device type and dtype are read."""
    from types import SimpleNamespace

    cuda_x = SimpleNamespace(device=SimpleNamespace(type="cuda"), dtype=torch.float32)
    cell = make_cell("peephole", layer_norm=True)
    assert not engine.AUTO or os.environ.get("GATEDRNN_TRITON") == "1"  # off unless asked for
    monkeypatch.setattr(engine, "AUTO", True)
    assert engine.usable(cell, cuda_x)
    assert not engine.usable(cell, torch.zeros(1, 1, 1))
    assert not engine.usable(make_cell("lstm", proj_size=2), cuda_x)
    assert not engine.usable(cell, SimpleNamespace(device=cuda_x.device, dtype=torch.float16))
    monkeypatch.setattr(engine, "AUTO", False)
    assert not engine.usable(cell, cuda_x)


def test_run_layer_and_modules_refuse_in_one_line():
    from gatedrnn.torch_engine import layer

    cell, params, x, state = make_inputs("lstm", {})
    y, _ = run_layer(cell, params, x, state, engine="triton")
    torch.testing.assert_close(y, autograd_layer(cell, params, x, state)[0], rtol=1e-12, atol=1e-13)
    module = layer("lstm", I, H, proj_size=2, dtype=torch.float64, engine="triton")
    with pytest.raises(ValueError, match=r"^engine='triton' does not compute lstm with proj_size=2 \(it computes proj_size in \[0\]\); use engine='fused'$"):
        module(x)


# -- the CUDA graph cache, with a stand-in for capture --------------------------------------
def _fake_record(fn, static_in):
    """What capture gives, without CUDA: outputs in buffers of their own, and a replay that runs
    ``fn`` on the static inputs again and writes into those buffers."""
    static_out = [None if o is None else o.clone() for o in fn(*static_in)]

    def replay():
        for s, o in zip(static_out, fn(*static_in)):
            if s is not None:
                s.copy_(o)
    return replay, static_out


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_graph_cache(name, monkeypatch):
    """``graphs.call``: one capture per loop and shape; replays for new inputs and a replaced
    parameter equal to eager launches; what a call returned is not overwritten by a later replay;
    a failed capture runs eagerly from then on."""
    from gatedrnn.torch_engine.triton import graphs

    monkeypatch.setattr(graphs, "_capturable", lambda inputs: True)
    monkeypatch.setattr(graphs, "_record", _fake_record)
    graphs.clear()
    cell, params, x, state = make_inputs(name, {})
    eager = lambda c, p, x_, s: engine.run(c, p, x_, s)  # noqa: E731
    calls = [(params, x), ({**params, "weight_hh": params["weight_hh"] * 0.5}, x * 2)]
    results = [outputs_and_grads(eager, cell, p, x_, state) for p, x_ in calls]
    assert len(graphs._graphs) == 2 and not graphs._failed  # a forward and a backward graph, reused
    first_y = results[0][0][0]
    monkeypatch.setattr(graphs, "ENABLED", False)
    for (out, grads), (p, x_) in zip(results, calls):
        out_e, grads_e = outputs_and_grads(eager, cell, p, x_, state)
        for a, b in zip(out, out_e):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for key in grads_e:
            torch.testing.assert_close(grads[key], grads_e[key], rtol=0, atol=0, msg=key)
    assert not torch.equal(first_y, results[1][0][0])  # the second replay did not overwrite the first call's output
    monkeypatch.setattr(graphs, "ENABLED", True)
    monkeypatch.setattr(graphs, "_record", lambda fn, static_in: 1 / 0)
    graphs.clear()
    out, _ = outputs_and_grads(eager, cell, params, x, state)
    assert len(graphs._failed) == 2 and not graphs._graphs
    torch.testing.assert_close(out[0], results[0][0][0], rtol=0, atol=0)
    graphs.clear()


# -- what it declares, and what it refuses --------------------------------------------------
def _other_value(value):
    """A valid value of an option's type other than ``value`` (for the options declared to one value)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 2
    raise AssertionError(f"no other value known for {value!r}")


def test_declaration_covers_every_option():
    """A cell's new option cannot be silently ignored: every option of a declared cell is declared."""
    for name, options in engine.HANDLES.items():
        assert set(options) == set(CELLS[name].options), name
        for key, handled in options.items():
            assert handled.values[0] == CELLS[name].options[key], (name, key)


@pytest.mark.parametrize("case", [(name, key) for name, opts in engine.HANDLES.items()
                                  for key, h in opts.items() if not h.every], ids="-".join)
def test_refuses_undeclared_values(case):
    name, key = case
    value = _other_value(engine.HANDLES[name][key].values[0])
    cell, params, x, state = make_inputs(name, {key: value} if key != "proj_size" else {key: 2})
    with pytest.raises(ValueError, match=f"engine='triton' does not compute {name} with {key}=") as err:
        engine.run(cell, params, x, state)
    assert "\n" not in str(err.value)


def test_refuses_undeclared_cells():
    undeclared = [name for name in CELLS if name not in engine.HANDLES]
    for name in undeclared:
        cell = make_cell(name)
        assert engine.cell_refusal(cell).startswith(f"engine='triton' does not compute the {name!r} cell")


def test_refuses_cpu_without_interpreter(monkeypatch):
    cell, params, x, state = make_inputs("lstm", {})
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match=r"^engine='triton' runs on CUDA tensors \(on CPU only under TRITON_INTERPRET=1"):
        engine.run(cell, params, x, state)


def test_refuses_without_triton(monkeypatch):
    cell, params, x, state = make_inputs("lstm", {})
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs the triton package \(pip install triton\)"):
        engine.run(cell, params, x, state)


@pytest.mark.parametrize("what", ["float16", "mixed dtypes", "mask_ih", "mask_hh shape"])
def test_refuses_bad_calls(what):
    cell, params, x, state = make_inputs("lstm", {})
    if what == "float16":
        params, x, state = {k: v.half() for k, v in params.items()}, x.half(), tuple(s.half() for s in state)
        expected = "computes float32 and float64"
    elif what == "mixed dtypes":
        params = {**params, "weight_hh": params["weight_hh"].float()}
        expected = "needs every tensor on cpu in torch.float64"
    elif what == "mask_ih":
        params = {**params, "mask_ih": torch.ones(B, I, dtype=torch.float64)}
        expected = "does not compute mask_ih"
    else:
        params = {**params, "mask_hh": torch.ones(B + 1, H, dtype=torch.float64)}
        expected = r"mask_hh should have shape \(3, 5\), got \(4, 5\)"
    with pytest.raises(ValueError, match=expected):
        engine.run(cell, params, x, state)


def test_kernels_compile_for_a_gpu():
    """The Triton compiler's own rules, which the interpreter does not apply: the launches of a
    sample of configurations (every compile-time flag set somewhere) compiled to a cubin for sm_90
    without a GPU, in a process without the interpreter. Every declared case, mask and dtype:
    ``python tests/torch_engine/triton_compile.py all 90 80``."""
    helper = Path(__file__).with_name("triton_compile.py")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    done = subprocess.run([sys.executable, str(helper), "quick", "90"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("compiled ")


def test_import_does_not_need_triton():
    """Importing gatedrnn (its engines included) imports no triton; the kernels load on first use."""
    code = ("import sys, gatedrnn, gatedrnn.torch_engine, gatedrnn.torch_engine.triton; "
            "assert not [m for m in sys.modules if m == 'triton' or m.startswith('triton.')], 'triton imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
