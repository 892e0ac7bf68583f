"""ONNX export of every module: the exported graph, run by onnxruntime on the same input,
matches PyTorch in float32.

The modules run the plain loop while exported (an ``autograd.Function`` has no ONNX form), or
torch.nn's kernels for a plain ``torch.nn`` configuration under ``engine="auto"``.
"""
from __future__ import annotations

import warnings

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from gatedrnn.torch_engine.cell_modules import CELL_MODULES  # noqa: E402
from gatedrnn.torch_engine.modules import MODULES  # noqa: E402

from .stepping import plausible  # noqa: E402

I, H, T, B = 3, 4, 4, 2

# float32 through the same ops in another runtime: differences are rounding in a different
# summation order, a few ulps of values of order 1 (1e-7), well inside the 1e-5
ATOL = RTOL = 1e-5


class Flat(torch.nn.Module):
    """``module(x[, hx])`` with the state as separate graph inputs and outputs."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, *state):
        hx = None
        if state:
            hx = state if self.module.cell.has_cell_state else state[0]
        out, hn = self.module(x, hx)
        return (out, *(hn if isinstance(hn, tuple) else (hn,)))


def _export_run(model, inputs, path, dynamo=False, dynamic_axes=None, run_inputs=None):
    names = [f"in{k}" for k in range(len(inputs))]
    with warnings.catch_warnings():
        # the tracer warns that the unrolled loop fixes the sequence length: that is the design
        warnings.simplefilter("ignore")
        kwargs = {"dynamic_axes": dynamic_axes} if dynamic_axes else {}
        torch.onnx.export(model, tuple(inputs), str(path), input_names=names, dynamo=dynamo, **kwargs)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = run_inputs if run_inputs is not None else inputs
    return session.run(None, {n: t.numpy() for n, t in zip(names, feeds)})


def _check(model, inputs, got):
    with torch.no_grad():
        want = model(*inputs)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(g), w, atol=ATOL, rtol=RTOL)


CASES = [
    *[(c, {}) for c in MODULES],
    ("lstm", {"proj_size": 2}), ("mogrifier", {"proj_size": 2, "rounds": 4, "rank": 2}),
    ("peephole", {"layer_norm": True}), ("lstm", {"forget_bias": 1.0, "drop_gates": ("o",)}),
    ("gru", {"layer_norm": True}), ("rnn", {"nonlinearity": "relu", "bias": False}),
]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def _model(cell_name, options, engine="fused", **kwargs):
    torch.manual_seed(0)
    module = MODULES[cell_name](I, H, engine=engine, **{"num_layers": 2, "bidirectional": True, **kwargs}, **options)
    return Flat(module.eval())


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_export_two_layers_bidirectional_batch_first_with_state(case, tmp_path):
    model = _model(*case, batch_first=True)
    x = torch.randn(B, T, I)
    state = plausible(model.module, [0.5 * torch.randn(4, B, s) for s in model.module.state_sizes])
    _check(model, [x, *state], _export_run(model, [x, *state], tmp_path / "m.onnx"))


@pytest.mark.parametrize("cell_name", list(MODULES))
def test_export_without_initial_state(cell_name, tmp_path):
    model = _model(cell_name, {}, num_layers=1, bidirectional=False)
    x = torch.randn(T, B, I)
    _check(model, [x], _export_run(model, [x], tmp_path / "m.onnx"))


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "rnn"])
def test_auto_engine_plain_config_exports_any_sequence_length(cell_name, tmp_path):
    """A plain torch.nn configuration exports as torch.nn's does: one recurrent node, so the
    graph takes another sequence length (and batch size) than the one it was traced with."""
    model = _model(cell_name, {}, engine="auto")
    x = torch.randn(T, B, I)
    axes = {"in0": {0: "T", 1: "B"}}
    longer = torch.randn(T + 3, B + 1, I)
    got = _export_run(model, [x], tmp_path / "m.onnx", dynamic_axes=axes, run_inputs=[longer])
    _check(model, [longer], got)
    ops = {node.op_type for node in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    assert {"LSTM", "GRU", "RNN"} & ops


class FlatStep(torch.nn.Module):
    """A single-step cell module with the state as separate graph inputs and outputs."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def forward(self, x, *state):
        out = self.step(x, state if len(state) > 1 else state[0])
        return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("cell_name", list(CELL_MODULES))
def test_export_single_step_cells(cell_name, tmp_path):
    torch.manual_seed(0)
    options = {"proj_size": 2} if cell_name in ("lstm", "mogrifier") else {}
    model = FlatStep(CELL_MODULES[cell_name](I, H, **options).eval())
    inputs = [torch.randn(B, I), *plausible(model.step, [0.5 * torch.randn(B, s) for s in model.step.state_sizes])]
    _check(model, inputs, _export_run(model, inputs, tmp_path / "m.onnx"))


@pytest.mark.parametrize("cell_name", ["lstm", "gru"])
def test_auto_engine_plain_config_with_state_batch_first(cell_name, tmp_path):
    model = _model(cell_name, {}, engine="auto", batch_first=True)
    x = torch.randn(B, T, I)
    state = plausible(model.module, [0.5 * torch.randn(4, B, s) for s in model.module.state_sizes])
    _check(model, [x, *state], _export_run(model, [x, *state], tmp_path / "m.onnx"))


def test_dynamo_exporter(tmp_path):
    pytest.importorskip("onnxscript")
    model = _model("lstm", {"proj_size": 2}, batch_first=True)
    x = torch.randn(B, T, I)
    state = plausible(model.module, [0.5 * torch.randn(4, B, s) for s in model.module.state_sizes])
    _check(model, [x, *state], _export_run(model, [x, *state], tmp_path / "m.onnx", dynamo=True))


def test_fused_engine_untouched_outside_export():
    """The export switch is scoped to export: the same module runs its own engine afterwards."""
    model = _model("lstm", {})
    assert model.module.resolve_engine(torch.randn(T, B, I)) == "fused"
