"""Zoneout, variational dropout, DropConnect and ``forget_bias_init`` in the modules, over the
engines: each is off in evaluation, a seed reproduces it, the fused engine equals the autograd
twin with the same masks (float64, outputs and every gradient), and the masks do what the NumPy
reference says they do."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import gatedrnn
from gatedrnn.cells import CELLS
from gatedrnn.reference import backward as np_backward
from gatedrnn.reference import forward as np_forward
from gatedrnn.torch_engine.modules import MODULES
from gatedrnn.torch_engine.regularisation import DROPOUTS, draw_masks

from .compiled_kernels import Spy, kernels  # noqa: F401 (kernels: a fixture)
from .stepping import plausible

I, H, T, B = 3, 4, 5, 3
F64 = torch.float64
ENGINES = ["fused", "autograd"]
ALL_ON = {"zoneout": 0.3, "dropout_input": 0.2, "dropout_between": 0.3, "dropout_output": 0.25,
          "dropout_state": 0.4, "weight_drop": 0.5}


def takes(cell, options):
    """``options`` less what ``cell`` declares it has no use for (zoneout, the recurrent weight's)."""
    c = CELLS[cell]
    drop = set()
    if not c.supports_zoneout:
        drop |= {"zoneout", "zoneout_h", "zoneout_c"}
    if not c.has_recurrent_product:
        drop |= {"dropout_state", "weight_drop"}
    return {k: v for k, v in options.items() if k not in drop}


def make(cell="lstm", seed=0, engine="fused", **kwargs):
    torch.manual_seed(seed)  # the same parameters for every module built with this seed
    return MODULES[cell](I, H, engine=engine, dtype=F64, generator=torch.Generator().manual_seed(1), **kwargs)


def inputs(seed=0, batch=B):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(T, batch, I, generator=gen, dtype=F64)


def run(module, x, seed=1):
    module.generator.manual_seed(seed)
    out, state = module(x)
    return out, (state if isinstance(state, tuple) else (state,))


# -- off in evaluation ------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", DROPOUTS)
def test_dropout_option_is_off_in_eval_and_on_in_training(option, engine):
    plain = make(engine=engine, num_layers=2)
    reg = make(engine=engine, num_layers=2, **{option: 0.5})
    x = inputs()
    plain.eval(), reg.eval()
    expected, _ = run(plain, x)
    got, _ = run(reg, x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    reg.train()
    trained, _ = run(reg, x)
    assert not torch.allclose(trained, expected), f"{option}=0.5 changed nothing in training"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", [c for c in CELLS if CELLS[c].supports_zoneout])
def test_zoneout_in_eval_is_the_expectation(cell, engine):
    # s_t = p * s_{t-1} + (1 - p) * step(s_{t-1}), written out with the cell's own step
    options = {"zoneout_h": 0.3, "zoneout_c": 0.6} if MODULES[cell](1, 1).cell.has_cell_state else {"zoneout": 0.3}
    module = make(cell, engine=engine, **options).eval()
    x = inputs()
    out, state_n = run(module, x)
    probs = (0.3, 0.6)
    params = module.layer_params(0)
    gx, _ = module.cell.input_proj(gatedrnn.torch_engine.ops.TORCH_OPS, params, x)
    state = tuple(x.new_zeros(B, size) for size in module.state_sizes)
    ys = []
    for t in range(T):
        new, _ = module.cell.step(gatedrnn.torch_engine.ops.TORCH_OPS, params, gx[t], state)
        state = tuple(p * s + (1 - p) * n for p, s, n in zip(probs, state, new))
        ys.append(state[0])
    torch.testing.assert_close(out, torch.stack(ys), rtol=1e-12, atol=1e-12)
    for got, expected in zip(state_n, state):
        torch.testing.assert_close(got[0], expected, rtol=1e-12, atol=1e-12)


# -- reproducibility ----------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", ["zoneout", *DROPOUTS])
def test_a_seed_reproduces_the_masks(option, engine):
    module = make(engine=engine, num_layers=2, **{option: 0.5})
    x = inputs()
    first, _ = run(module, x, seed=7)
    again, _ = run(module, x, seed=7)
    other, _ = run(module, x, seed=8)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert not torch.equal(other, first), f"{option}: seeds 7 and 8 gave the same output"


def test_masks_are_the_same_in_every_dtype():
    # drawn in float32 whatever the module's dtype, so a float32 run repeats a float64 one
    module = make(**ALL_ON)
    m64 = draw_masks(module, T, B, inputs())
    module.generator.manual_seed(1)
    m32 = draw_masks(module, T, B, inputs().float())
    weight, state, zoneout = m64.layers[0]
    torch.testing.assert_close(m32.layers[0][0].double(), weight, rtol=0, atol=0)
    torch.testing.assert_close(m32.layers[0][2][1].double(), zoneout[1], rtol=0, atol=0)


# -- the two engines see the same masks and agree -----------------------------------------------

CASES = [
    *[(c, {**takes(c, ALL_ON), "num_layers": 2}) for c in CELLS],
    ("lstm", {**ALL_ON, "num_layers": 2, "bidirectional": True, "proj_size": 2}),
    ("gru", {**ALL_ON, "bidirectional": True}),
    ("lstm", {"zoneout_c": 0.5, "layer_norm": True}),
    ("mogrifier", {"zoneout_h": 0.5, "dropout_state": 0.3, "rounds": 3}),
]


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items() if k not in ALL_ON) + (
        "-all" if "weight_drop" in case[1] else "")


def _loss_and_grads(module, x, packed_lengths=None):
    x = x.clone().requires_grad_()
    n = module.num_layers * module.num_directions
    gen = torch.Generator().manual_seed(3)
    state0 = plausible(module, tuple((0.5 * torch.randn(n, B, s, generator=gen, dtype=F64)).requires_grad_()
                                     for s in module.state_sizes))
    hx = state0 if module.cell.has_cell_state else state0[0]
    module.generator.manual_seed(11)
    inp = x if packed_lengths is None else pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
    out, state_n = module(inp, hx)
    out = out if packed_lengths is None else out.data
    state_n = state_n if isinstance(state_n, tuple) else (state_n,)
    w = torch.Generator().manual_seed(4)
    loss = (out * torch.randn(out.shape, generator=w, dtype=F64)).sum()
    loss = loss + sum((s * torch.randn(s.shape, generator=w, dtype=F64)).sum() for s in state_n)
    leaves = [x, *state0, *module.parameters()]
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [out, *state_n, *[g if g is not None else torch.zeros_like(l) for g, l in zip(grads, leaves)]]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_fused_equals_reference_with_the_same_masks(case):
    cell, options = case
    fused = make(cell, engine="fused", **options)
    ref = make(cell, engine="autograd", **options)
    got, expected = _loss_and_grads(fused, inputs()), _loss_and_grads(ref, inputs())
    names = ["output", *[f"state_n{k}" for k in range(len(fused.state_sizes))], "x",
             *[f"state0_{k}" for k in range(len(fused.state_sizes))], *dict(fused.named_parameters())]
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("engine", ENGINES)
def test_packed_zoneout_keeps_padded_steps(engine):
    # with zoneout and padding both in the keep mask, a short sequence's final state is its state
    # at its own last step, whatever the zoneout mask said about the padded steps
    module = make(engine=engine, zoneout=0.5, dropout_state=0.3)
    lengths = torch.tensor([5, 2, 3])
    module.generator.manual_seed(2)
    out, (h_n, c_n) = module(pack_padded_sequence(inputs(), lengths, enforce_sorted=False))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(h_n[0, b], padded[n - 1, b], rtol=0, atol=0)
    fused = _loss_and_grads(make(engine="fused", zoneout=0.5), inputs(), lengths)
    ref = _loss_and_grads(make(engine="autograd", zoneout=0.5), inputs(), lengths)
    for g, e in zip(fused, ref):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_auto_engine_leaves_torch_kernels_when_masks_are_drawn():
    module = make(engine="auto", zoneout=0.2)
    assert module.resolve_engine(inputs()) == "fused"
    module = make(engine="auto", dropout_state=0.2)
    assert module.resolve_engine(inputs()) == "fused"
    module.eval()  # dropout is off in evaluation: nothing stands in the way
    assert module.resolve_engine(inputs()) != "autograd"


# -- what the masks do: the module against the NumPy reference ------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole"])
def test_module_computes_what_the_reference_does_with_its_masks(cell):
    module = make(cell, engine="fused", zoneout=0.4, dropout_state=0.5, weight_drop=0.5,
                  dropout_input=0.3, dropout_output=0.2)
    x = inputs()
    module.generator.manual_seed(5)
    masks = draw_masks(module, T, B, x)
    (out, state_n), weight = run(module, x, seed=5), module.weight_hh_l0
    weight_mask, state_mask, zoneout = masks.layers[0]
    params = {k: v.detach().numpy() for k, v in module.layer_params(0).items()}
    params["weight_hh"] = params["weight_hh"] * weight_mask.numpy()
    x_np = (x * masks.input).numpy()
    y, _, cache = np_forward(cell, params, x_np, keep=tuple(z.numpy() for z in zoneout),
                             mask_hh=state_mask.numpy(), **module.cell.config)
    np.testing.assert_allclose(out.detach().numpy(), y * masks.output.numpy(), rtol=1e-12, atol=1e-13)
    # the raw weight's gradient is the masked weight's, masked: DropConnect's chain rule
    dy = np.ones_like(y)
    grads = np_backward(cache, dy * masks.output.numpy())
    (gw,) = torch.autograd.grad(out.sum(), weight)
    np.testing.assert_allclose(gw.numpy(), grads["weight_hh"] * weight_mask.numpy(), rtol=1e-10, atol=1e-12)


def test_masks_have_the_shapes_and_rates_asked_for():
    module = MODULES["lstm"](I, H, num_layers=2, bidirectional=True, proj_size=2, generator=torch.Generator().manual_seed(0),
                             zoneout_h=0.2, zoneout_c=0.7, **{k: v for k, v in ALL_ON.items() if k != "zoneout"})
    Tb, Bb = 200, 16
    masks = draw_masks(module, Tb, Bb, torch.zeros(1))
    assert masks.input.shape == (Bb, I)  # one mask per sequence: no time axis
    assert [m.shape for m in masks.between] == [(Bb, 4)] and masks.output.shape == (Bb, 4)
    assert len(masks.layers) == 4
    weight, state, (zh, zc) = masks.layers[3]
    assert weight.shape == (16, 2) and state.shape == (Bb, 2)
    assert zh.shape == (Tb, Bb, 2) and zc.shape == (Tb, Bb, H)
    # rates within 5 standard errors at these sizes
    assert abs(zh.mean().item() - 0.2) < 5 * (0.2 * 0.8 / zh.numel()) ** 0.5
    assert abs(zc.mean().item() - 0.7) < 5 * (0.7 * 0.3 / zc.numel()) ** 0.5
    assert abs((masks.input > 0).double().mean().item() - 0.8) < 5 * (0.16 / masks.input.numel()) ** 0.5
    torch.testing.assert_close(masks.input.unique(), torch.tensor([0.0, 1 / 0.8]))
    assert not torch.equal(zc[0], zc[1]) and not torch.equal(zc[:, 0], zc[:, 1])  # per step, per row


def test_variational_output_mask_is_shared_across_steps():
    module = make(dropout_output=0.5)
    out, _ = run(module, inputs())
    zero = out == 0
    assert zero.any() and torch.equal(zero, zero[:1].expand_as(zero))


# -- weight drop keeps the parameters; the options are validated --------------------------------

def test_weight_drop_leaves_the_state_dict_and_the_raw_weight():
    plain, reg = make(num_layers=2), make(num_layers=2, weight_drop=0.5)
    assert list(reg.state_dict()) == list(plain.state_dict())
    before = reg.weight_hh_l1.detach().clone()
    out, _ = run(reg, inputs())
    out.sum().backward()
    torch.testing.assert_close(reg.weight_hh_l1, before, rtol=0, atol=0)
    assert reg.weight_hh_l1.grad is not None and (reg.weight_hh_l1.grad == 0).any()  # dropped entries
    reg.load_state_dict(torch.nn.LSTM(I, H, num_layers=2, dtype=F64).state_dict())


@pytest.mark.parametrize("kwargs, message", [
    ({"zoneout_c": 0.1}, "zoneout_c needs a cell state"),
    ({"dropout_state": 1.0}, r"dropout_state must be a probability in \[0, 1\), got 1.0"),
    ({"zoneout": -0.1}, r"zoneout must be a probability in \[0, 1\], got -0.1"),
    ({"weight_drop": True}, "weight_drop must be a probability"),
])
def test_options_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gatedrnn.GRU(I, H, **kwargs)


def test_zoneout_or_its_parts_not_both():
    with pytest.raises(ValueError, match="not both"):
        gatedrnn.LSTM(I, H, zoneout=0.1, zoneout_h=0.2)


# -- one step at a time ---------------------------------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
def test_step_equals_forward_on_one_step(training):
    module = make(num_layers=2, **ALL_ON).train(training)
    x = inputs()[0]
    out, (h, c) = run(module, x.unsqueeze(0))
    module.generator.manual_seed(1)
    step_out, (h_s, c_s) = module.step(x)
    torch.testing.assert_close(step_out, out[0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(c_s, c, rtol=1e-12, atol=1e-13)


# -- forget_bias_init --------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "peephole", "cifg", "mogrifier"])
def test_forget_bias_init_is_stored_in_every_layer_and_direction(cell):
    module = MODULES[cell](I, H, num_layers=2, bidirectional=True, forget_bias_init=1.0)
    gates = module.cell.gates
    k = gates.index("f")
    for layer in range(2):
        for d in range(2):
            p = module.layer_params(layer, d)
            torch.testing.assert_close(p["bias_ih"][k * H:(k + 1) * H], torch.ones(H), rtol=0, atol=0)
            torch.testing.assert_close(p["bias_hh"][k * H:(k + 1) * H], torch.zeros(H), rtol=0, atol=0)
            others = torch.cat([p["bias_ih"][j * H:(j + 1) * H] for j in range(len(gates)) if j != k])
            assert (others != 1.0).all(), "only the forget block is filled"
    with torch.no_grad():
        module.bias_ih_l0.zero_()
    module.reset_parameters()  # re-initialising fills it again
    assert (module.bias_ih_l0[k * H:(k + 1) * H] == 1.0).all()


def test_forget_bias_init_changes_no_computation():
    # stored, not added at compute time: the same weights give the same output without the option
    a = make(forget_bias_init=2.0)
    b = make()
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(run(a, inputs())[0], run(b, inputs())[0], rtol=0, atol=0)
    assert (a.bias_ih_l0[H:2 * H] == 2.0).all()


# -- the single-step cell modules: zoneout only -------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cell_module_zoneout_equals_the_sequence_module_on_one_step(cell, training):
    from gatedrnn.torch_engine.cell_modules import CELL_MODULES

    seq = make(cell, zoneout=0.5).train(training)
    one = CELL_MODULES[cell](I, H, dtype=F64, zoneout=0.5, generator=torch.Generator()).train(training)
    one.load_state_dict({k[: -len("_l0")]: v for k, v in seq.state_dict().items()})
    x = inputs()
    gen = torch.Generator().manual_seed(9)
    state0 = tuple(torch.randn(B, s, generator=gen, dtype=F64) for s in seq.state_sizes)
    seq.generator.manual_seed(3)
    _, expected = seq(x[:1], tuple(s.unsqueeze(0) for s in state0) if len(state0) == 2 else state0[0].unsqueeze(0))
    one.generator.manual_seed(3)
    got = one(x[0], state0 if len(state0) == 2 else state0[0])
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e[0], rtol=1e-12, atol=1e-13)


def test_cell_module_refuses_per_sequence_masks():
    from gatedrnn.torch_engine.cell_modules import CELL_MODULES

    with pytest.raises(ValueError, match=r"takes zoneout only, got \['dropout_state'\]"):
        CELL_MODULES["lstm"](I, H, dropout_state=0.1)


# -- the README's options table says what the code takes ------------------------------------------

VALUES = {"bias": False, "layer_norm": True, "nonlinearity": "relu", "num_heads": 2, "forget_bias": 1.0, "forget_bias_init": 1.0,
          "proj_size": 2, "drop_gates": ("i",), "input_activation": "identity", "output_activation": "identity",
          "rounds": 2, "rank": 1, "zoneout": 0.1, "zoneout_h": 0.1, "zoneout_c": 0.1, "dropout_state": 0.1,
          "weight_drop": 0.1, "dropout_input": 0.1, "dropout_between": 0.1, "dropout_output": 0.1, "dropout": 0.1}


def _readme_options():
    import pathlib
    import re

    text = (pathlib.Path(__file__).parents[2] / "README.md").read_text()
    table = text.split("## Options", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in table.splitlines():
        if not line.startswith("| `"):
            continue
        option_col, cells_col = line.split("|")[1:3]
        named = set(re.findall(r"`(\w+)`", cells_col))
        cells = set(CELLS) if cells_col.strip() == "all" else set(CELLS) - named if cells_col.strip().startswith("all but") else named
        for option in re.findall(r"`(\w+)`", option_col.split("(")[0]):
            rows[option] = cells
    return rows


def test_readme_options_table_matches_the_code():
    rows = _readme_options()
    assert set(rows) == set(VALUES), f"options in the table vs tested: {sorted(set(rows) ^ set(VALUES))}"
    for option, cells in rows.items():
        for cell in CELLS:
            kwargs = {option: VALUES[option], "num_layers": 2}
            if cell in cells:
                module = MODULES[cell](I, H, dtype=F64, **kwargs)
                out, _ = module(inputs())
                assert torch.isfinite(out).all(), (option, cell)
            else:
                with pytest.raises(ValueError):
                    MODULES[cell](I, H, **kwargs)


def test_double_backward_through_the_state_mask():
    # the fused engine's second derivatives recompute through the twin, mask_hh included
    from gatedrnn.cells import make_cell
    from gatedrnn.torch_engine import run_layer

    cell = make_cell("lstm")
    gen = torch.Generator().manual_seed(0)
    params = {s.name: (torch.rand(s.shape, generator=gen, dtype=F64) - 0.5).requires_grad_()
              for s in cell.param_spec(2, 3)}
    x = torch.randn(3, 2, 2, generator=gen, dtype=F64, requires_grad=True)
    mask = (torch.rand(2, 3, generator=gen, dtype=F64) > 0.5) * 2.0

    def fn(x, w_hh, *rest):
        p = {**params, "weight_hh": w_hh, "mask_hh": mask}
        y, _ = run_layer(cell, p, x, (x.new_zeros(2, 3), x.new_zeros(2, 3)))
        return y

    assert torch.autograd.gradgradcheck(fn, (x, params["weight_hh"]), fast_mode=True)


# -- embedding dropout: whole words ----------------------------------------------------------------

def test_embedding_dropout_drops_whole_words():
    from gatedrnn.torch_engine.regularisation import embedding_dropout

    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 6)
    tokens = torch.randint(0, 50, (40, 8))
    gen = torch.Generator().manual_seed(3)
    out = embedding_dropout(emb, tokens, 0.5, training=True, generator=gen)
    dropped = (out == 0).all(-1)  # (T, B): a position whose whole vector is zero
    for v in tokens.unique():  # a word is dropped everywhere or nowhere
        at = dropped[tokens == v]
        assert at.all() or not at.any(), f"word {v.item()} dropped at some positions only"
    kept = ~dropped
    torch.testing.assert_close(out[kept], 2.0 * emb(tokens)[kept])  # scaled by 1 / (1 - p)
    assert 0.2 < dropped.float().mean().item() < 0.8
    again = embedding_dropout(emb, tokens, 0.5, training=True, generator=gen.manual_seed(3))
    torch.testing.assert_close(again, out, rtol=0, atol=0)
    torch.testing.assert_close(embedding_dropout(emb, tokens, 0.5, training=False), emb(tokens), rtol=0, atol=0)


# -- dropout in one pass (csrc/dropout.cpp) -------------------------------------------------------

def hash_keep(n, p, seed):
    """The kernel's mask from its twin in torch's integer operations: element ``i`` is kept where
    the hash of ``i`` and ``seed`` is at least ``p * 2^32``."""
    from gatedrnn.torch_engine.regularisation import dropout_threshold, hash_of_indices

    return hash_of_indices(n, seed) >= dropout_threshold(p)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
@pytest.mark.parametrize("seed", [0, 12345, -(2 ** 62) - 7])
def test_dropout_kernel_mask_is_the_hash_bit_for_bit(kernels, dtype, p, seed):
    x = torch.randn(7, 5, 33, dtype=dtype)
    out = torch.empty_like(x)
    from gatedrnn.torch_engine.regularisation import dropout_threshold

    kernels.dropout_apply(x, out, seed, dropout_threshold(p), 1.0 / (1.0 - p))
    keep = hash_keep(x.numel(), p, seed).view_as(x)
    torch.testing.assert_close(out, x * (keep.to(dtype) * torch.tensor(1 / (1 - p), dtype=dtype)), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.05, 0.5, 0.95])
def test_zoneout_mask_is_the_hash_below_the_threshold(kernels, dtype, p):
    """With the kernels, zoneout's mask is 1 exactly where dropout's hash would drop (the hash of
    the element's index and one seed drawn from the generator, below ``p * 2^32``), in any dtype."""
    from gatedrnn.torch_engine.regularisation import zoneout_mask

    shape = (6, 4, 37)
    mask = zoneout_mask(shape, p, torch.zeros(1, dtype=dtype), torch.Generator().manual_seed(5))
    seed = int(torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64, generator=torch.Generator().manual_seed(5)))
    expected = ~hash_keep(mask.numel(), p, seed).view(shape)
    assert mask.dtype == dtype
    torch.testing.assert_close(mask, expected.to(dtype), rtol=0, atol=0)
    big = zoneout_mask((64, 32, 512), p, torch.zeros(1), None)
    assert abs(big.mean().item() - p) < 0.005  # the rate asked for
    assert torch.equal(zoneout_mask(shape, 1.0, torch.zeros(1, dtype=dtype), None), torch.ones(shape, dtype=dtype))


def test_zoneout_mask_without_the_kernels_is_torch_rand(monkeypatch):
    from gatedrnn.torch_engine import compiled
    from gatedrnn.torch_engine.regularisation import zoneout_mask

    monkeypatch.setattr(compiled, "ENABLED", False)
    mask = zoneout_mask((5, 3, 8), 0.3, torch.zeros(1, dtype=torch.float64), torch.Generator().manual_seed(2))
    expected = torch.rand((5, 3, 8), generator=torch.Generator().manual_seed(2)) < 0.3
    torch.testing.assert_close(mask, expected.double(), rtol=0, atol=0)


def test_dropout_kernel_refuses_mismatched_tensors(kernels):
    x = torch.randn(4, 5)
    with pytest.raises(RuntimeError, match="out must have"):
        kernels.dropout_apply(x, torch.empty(3), 0, 0, 1.0)
    with pytest.raises(RuntimeError, match="contiguous"):
        kernels.dropout_apply(x.t(), torch.empty(5, 4), 0, 0, 1.0)


def _spied(monkeypatch, kernels):
    """``dropout`` with the kernel's calls counted."""
    from gatedrnn.torch_engine import compiled

    spy = Spy(kernels)
    monkeypatch.setattr(compiled, "prebuilt", lambda: spy)
    return spy


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_dropout_forward_and_backward_apply_one_mask(kernels, monkeypatch, dtype):
    from gatedrnn.torch_engine.regularisation import dropout

    spy = _spied(monkeypatch, kernels)
    p = 0.4
    x = torch.randn(6, 4, 10, dtype=dtype, requires_grad=True)
    torch.manual_seed(5)
    y = dropout(x, p)
    assert (spy.calls, spy.names) == (1, {"dropout_apply"}), "the kernel did not run"
    mask = (y != 0).to(dtype) * torch.tensor(1 / (1 - p), dtype=dtype)  # the kernel scales in dtype
    torch.testing.assert_close(y, x.detach() * mask, rtol=0, atol=0)
    g = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, g)
    assert spy.calls == 2, "the backward did not recompute the mask in the kernel"
    torch.testing.assert_close(dx, g * mask, rtol=0, atol=0)
    torch.manual_seed(5)
    torch.testing.assert_close(dropout(x, p), y, rtol=0, atol=0)  # a seed gives the same mask
    assert not torch.equal(dropout(x, p) != 0, y != 0)  # the next call draws another


def test_dropout_gradients_check_twice(kernels):
    from gatedrnn.torch_engine.regularisation import dropout

    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)

    def fn(x):
        torch.manual_seed(2)
        return dropout(x, 0.3)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_drops_at_the_rate_asked_for(kernels, p):
    from gatedrnn.torch_engine.regularisation import dropout

    torch.manual_seed(0)
    n = 1 << 20
    y = dropout(torch.ones(n), p)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - p) < 5 * (p * (1 - p) / n) ** 0.5  # five standard deviations of a binomial
    # no pattern along the index: every 4096-element run drops about p of its elements
    runs = (y == 0).double().view(-1, 4096).mean(1)
    assert runs.min().item() > p - 6 * (p * (1 - p) / 4096) ** 0.5
    assert runs.max().item() < p + 6 * (p * (1 - p) / 4096) ** 0.5
    assert abs(y.mean().item() - 1.0) < 0.01  # the kept are scaled by 1 / (1 - p)


def test_dropout_is_torch_dropout_where_the_kernel_does_not_run(monkeypatch):
    from gatedrnn.torch_engine import compiled
    from gatedrnn.torch_engine.regularisation import Dropout, dropout

    monkeypatch.setattr(compiled, "ENABLED", False)
    x = torch.randn(5, 7)
    torch.manual_seed(3)
    got = dropout(x, 0.25)
    torch.manual_seed(3)
    torch.testing.assert_close(got, torch.nn.functional.dropout(x, 0.25, True), rtol=0, atol=0)
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.25).eval()
    assert module(x) is x and "p=0.25" in repr(module)


def test_dropout_never_waits_for_a_build(monkeypatch):
    """Nothing built yet: torch's dropout, and no build started (it would come out of a budget)."""
    from gatedrnn.torch_engine import compiled
    from gatedrnn.torch_engine.regularisation import dropout

    monkeypatch.setattr(compiled, "_state", {})
    monkeypatch.setattr(compiled, "_built", lambda name: None)
    monkeypatch.setattr(compiled, "pointwise", lambda: pytest.fail("dropout asked for a build"))
    x = torch.randn(6, 5)
    torch.manual_seed(8)
    got = dropout(x, 0.3)
    torch.manual_seed(8)
    torch.testing.assert_close(got, torch.nn.functional.dropout(x, 0.3, True), rtol=0, atol=0)
    assert compiled.prebuilt() is None


def test_prebuilt_finds_an_earlier_build_on_disk(kernels, monkeypatch):
    from gatedrnn.torch_engine import compiled

    monkeypatch.setattr(compiled, "_state", {})
    assert compiled.prebuilt() is not None and hasattr(compiled.prebuilt(), "dropout_apply")
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert compiled.prebuilt() is None


def test_dropout_inside_torch_compile_is_torch_dropout(kernels, monkeypatch):
    from gatedrnn.torch_engine.regularisation import dropout

    spy = _spied(monkeypatch, kernels)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x = torch.randn(5, 7)
    torch.manual_seed(4)
    got = dropout(x, 0.5)
    torch.manual_seed(4)
    torch.testing.assert_close(got, torch.nn.functional.dropout(x, 0.5, True), rtol=0, atol=0)
    assert spy.calls == 0, "the kernel ran inside a compiled graph"


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_refuses_a_probability_out_of_range_as_torch_does(p):
    from gatedrnn.torch_engine.regularisation import Dropout, dropout

    with pytest.raises(ValueError, match="between 0 and 1"):
        torch.nn.Dropout(p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(torch.ones(3), p)


@pytest.mark.parametrize("randomness", ["different", "same"])
def test_per_sample_gradients_with_zoneout_and_dropout_under_vmap(kernels, randomness):  # noqa: F811
    """Per-sample gradients (``vmap(grad)``) of a module with zoneout, state dropout and the hashed
    ``dropout`` on its output: under a ``torch.func`` transform the masks are torch's draws, so
    ``vmap``'s randomness modes hold (the hash's seed, read with ``.item()``, cannot be); with
    ``"same"`` every sample of identical inputs sees the same masks, so their gradients are equal,
    and with ``"different"`` they differ."""
    from torch.func import functional_call, grad, vmap

    module = make(engine="fused", zoneout=0.5, dropout_state=0.3)
    params = {k: v.detach() for k, v in module.named_parameters()}
    x = inputs(batch=1)[:, 0].expand(3, T, I).clone()  # three identical unbatched samples

    def loss(p, sample):
        out = functional_call(module, p, (sample,))[0]
        return gatedrnn.torch_engine.regularisation.dropout(out, 0.5).square().sum()

    per_sample = vmap(grad(loss), in_dims=(None, 0), randomness=randomness)(params, x)
    g = per_sample["weight_hh_l0"]
    assert g.shape == (3, *params["weight_hh_l0"].shape) and torch.isfinite(g).all()
    same = [torch.equal(g[0], g[k]) for k in (1, 2)]
    assert all(same) if randomness == "same" else not any(same)
