"""The capability table (torch_engine/capability.py): which configurations and calls the
specialised loops take, and which they leave to the generic loop."""
import itertools

import numpy as np
import pytest
import torch

import gatedrnn
from gatedrnn import reference
from gatedrnn.cells import CELLS, make_cell
from gatedrnn.torch_engine import capability, generation
from gatedrnn.torch_engine.function import run_loop
from gatedrnn.torch_engine.functional import run_layer
from gatedrnn.torch_engine.generic import GENERIC
from gatedrnn.torch_engine.native import native_kernel

from .loop_cases import _id, make_inputs


@pytest.mark.parametrize("case", [("lstm", {"proj_size": 2}), ("lstm", {"proj_size": 2, "layer_norm": True}),
                                  ("lstm", {"drop_gates": ("i",)}), ("lstm", {"output_activation": "identity"}),
                                  ("peephole", {"input_activation": "identity"}),
                                  ("mogrifier", {"layer_norm": True}), ("mogrifier", {"proj_size": 2})], ids=_id)
def test_other_configurations_stay_generic(case):
    cell, params, x, state = make_inputs(*case)
    assert not capability.supports(cell, params, x)


def test_odd_masks_stay_generic():
    """Masks the loops do not take: on the input (``mask_ih``), of another dtype, a keep mask
    that is not ``(T, B|1, size|1)``, a state-dropout mask of another shape."""
    cell, params, x, state = make_inputs("lstm", {})
    T, B = x.shape[:2]
    assert capability.supports(cell, params, x, (torch.zeros(T, B, 1, dtype=x.dtype),) * 2)
    assert not capability.supports(cell, {**params, "mask_ih": torch.ones(B, 4, dtype=x.dtype)}, x)
    assert not capability.supports(cell, params, x, (torch.zeros(T, B, 1, dtype=torch.float32),) * 2)
    assert not capability.supports(cell, params, x, (torch.zeros(B, 1, dtype=x.dtype),) * 2)
    assert not capability.supports(cell, params, x, (torch.zeros(T + 1, B, 1, dtype=x.dtype),) * 2)
    assert not capability.supports(cell, {**params, "mask_hh": torch.ones(1, 6, dtype=x.dtype)}, x)
    assert capability.supports(cell, {**params, "mask_hh": torch.ones(B, 6, dtype=x.dtype)}, x)


def test_state_dropout_of_a_per_unit_weight():
    """IndRNN's ``weight_hh`` is ``(H,)``: its loop takes ``mask_hh`` of ``(B, H)``, nothing else;
    the min cells have no recurrent weight for one to act on."""
    cell, params, x, state = make_inputs("indrnn", {})
    B, H = state[0].shape
    assert capability.loop_for(cell).name == "indrnn"
    assert capability.supports(cell, {**params, "mask_hh": torch.ones(B, H, dtype=x.dtype)}, x)
    assert not capability.supports(cell, {**params, "mask_hh": torch.ones(1, H, dtype=x.dtype)}, x)
    cell, params, x, state = make_inputs("mingru", {})
    assert not capability.supports(cell, {**params, "mask_hh": torch.ones(B, H, dtype=x.dtype)}, x)


def test_switch_off(monkeypatch):
    cell, params, x, state = make_inputs("lstm", {})
    monkeypatch.setattr(capability, "ENABLED", False)
    assert not capability.supports(cell, params, x)


# -- every option every cell declares, through every engine, against the NumPy reference ------
def _samples(cls):
    return [(key, value) for key, values in cls.option_samples.items() for value in values]


def _valid(name, options):
    try:
        make_cell(name, **options)
    except ValueError:  # a combination the cell refuses (forget_bias without a forget gate)
        return False
    return True


def configurations():
    """Each cell at its defaults, with each option at each of its sample values (with and without
    zoneout and state-dropout masks), and with every pair of options at their first samples.
    Generated from the cells' own ``options``/``option_samples``, so a new option is in here."""
    for name, cls in CELLS.items():
        yield name, {}, False
        yield name, {}, True
        for key, value in _samples(cls):
            if _valid(name, {key: value}):
                yield name, {key: value}, False
                yield name, {key: value}, True
        firsts = [(key, values[0]) for key, values in cls.option_samples.items()]
        for (k1, v1), (k2, v2) in itertools.combinations(firsts, 2):
            if _valid(name, {k1: v1, k2: v2}):
                yield name, {k1: v1, k2: v2}, False


CONFIGS = list(configurations())


def _config_id(config):
    name, options, masks = config
    return _id((name, options)) + ("-masks" if masks else "")


def test_every_option_has_samples():
    """Every option of every cell names values to test it with, each accepted by the cell and
    different from the default: an option without them would escape the enumeration below."""
    for name, cls in CELLS.items():
        assert set(cls.option_samples) == set(cls.options), (
            f"{name}: options without samples {sorted(set(cls.options) - set(cls.option_samples))}, "
            f"samples of no option {sorted(set(cls.option_samples) - set(cls.options))}")
        for key, value in _samples(cls):
            assert value != cls.options[key], (name, key)
            assert _valid(name, {key: value}), (name, key, value)


def test_declarations_name_real_options():
    """The capability table declares only cells and options that exist (a typo would make a
    declaration silently narrower or wider than meant)."""
    for who, handles in capability.TABLE.items():
        for name, declared in handles.items():
            assert name in CELLS, (who, name)
            unknown = set(declared) - set(CELLS[name].options)
            assert not unknown, f"{who} declares unknown options {sorted(unknown)} of {name}"


def _reference(cell, params, x, state, gy, gs, keep, mask_hh):
    """The NumPy reference's outputs and gradients (keys: parameters, ``x``, ``state0``...)."""
    to_np = lambda t: t.detach().numpy()  # noqa: E731
    np_state = tuple(map(to_np, state))
    y, state_n, cache = reference.forward(
        cell, {k: to_np(v) for k, v in params.items()}, to_np(x),
        np_state if cell.has_cell_state else np_state[0],
        keep=None if keep is None else tuple(np.broadcast_to(to_np(k), (*x.shape[:2], s.shape[-1]))
                                             for k, s in zip(keep, state)),
        mask_hh=None if mask_hh is None else to_np(mask_hh))
    state_n = tuple(state_n) if cell.has_cell_state else (state_n,)
    grads = reference.backward(cache, to_np(gy), tuple(map(to_np, gs)) if cell.has_cell_state else to_np(gs[0]))
    renamed = {f"{n}0": f"state{k}" for k, n in enumerate(cell.state_names)}
    grads = {renamed.get(k, k): v for k, v in grads.items()}
    return [y, *state_n], grads


def _torch(fn, params, x, state, gy, gs, mask_hh):
    leaves = [t.clone().requires_grad_() for t in (*params.values(), x, *state)]
    p = dict(zip(params, leaves[: len(params)]))
    if mask_hh is not None:
        p["mask_hh"] = mask_hh
    y, state_n = fn(p, leaves[len(params)], tuple(leaves[len(params) + 1 :]))
    loss = (y * gy).sum() + sum((s * g).sum() for s, g in zip(state_n, gs))
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [*params, "x", *(f"state{k}" for k in range(len(state)))]
    return [y.detach().numpy(), *(s.detach().numpy() for s in state_n)], dict(zip(names, grads))


def _stepped(step):
    """A per-token step run over a sequence (no masks)."""
    def fn(p, x, state):
        ys = []
        for t in range(x.shape[0]):
            state = tuple(step(p)(x[t], state))
            ys.append(state[0])
        return torch.stack(ys), state
    return fn


def engines(cell, keep, masks):
    """``name -> fn(p, x, state)`` for every engine, or ``None`` where it declines ``cell``."""
    out = {
        "autograd": lambda p, x, s: run_layer(cell, p, x, s, keep, engine="autograd"),
        "fused": lambda p, x, s: run_layer(cell, p, x, s, keep, engine="fused"),
        "generic": lambda p, x, s: run_loop(GENERIC, cell, p, x, s, keep),
    }
    for loop in capability.LOOPS:
        taken = capability.accepts(loop.handles, cell) and (keep is None or getattr(loop, "takes_keep", True))
        out[f"loop:{loop.name}"] = (lambda p, x, s, loop=loop: run_loop(loop, cell, p, x, s, keep)) if taken else None
    taken = capability.accepts(capability.PER_TOKEN_STEP, cell) and not masks
    out["per_token_step"] = _stepped(lambda p: generation.lstm_step(cell, p)) if taken else None
    module = gatedrnn.layer(cell.name, 3, 4, engine="auto", dtype=torch.float64, **cell.config)
    taken = native_kernel(module, torch.zeros(1, 1, 3, dtype=torch.float64)) is not None and not masks
    out["native_sequence"] = _native(module) if taken else None
    return out


def _native(module):
    """The module on ``engine="auto"``, which runs torch.nn's kernel (one layer, ``_l0`` names)."""
    def fn(p, x, state):
        hx = tuple(s.unsqueeze(0) for s in state)
        y, state_n = torch.func.functional_call(module, {k + "_l0": v for k, v in p.items()},
                                                (x, hx if len(hx) == 2 else hx[0]))
        state_n = state_n if isinstance(state_n, tuple) else (state_n,)
        return y, tuple(s.squeeze(0) for s in state_n)
    return fn


@pytest.mark.parametrize("config", CONFIGS, ids=[_config_id(c) for c in CONFIGS])
def test_each_engine_computes_or_declines(config):
    """Each engine computes each configuration equal to the NumPy reference (float64: outputs,
    final states, every gradient including the input's and the initial state's) or declines it;
    a specialised loop that takes a configuration it does not compute fails here."""
    name, options, masks = config
    cell, params, x, state = make_inputs(name, options, T=3, B=2, I=3, H=4)
    gen = torch.Generator().manual_seed(5)
    gy = torch.randn(x.shape[0], x.shape[1], state[0].shape[-1], generator=gen, dtype=torch.float64)
    gs = tuple(torch.randn(s.shape, generator=gen, dtype=torch.float64) for s in state)
    keep = mask_hh = None
    if masks:
        keep = tuple((torch.rand(*x.shape[:2], s.shape[-1], generator=gen) < 0.3).double() for s in state)
        if not cell.supports_zoneout:  # a state kept whole (the sLSTM's): padding-like masks
            keep = (keep[0],) * len(state)
        if cell.has_recurrent_product:
            mask_hh = (torch.rand(x.shape[1], state[0].shape[-1], generator=gen) >= 0.4).double() / 0.6
    out_ref, g_ref = _reference(cell, params, x, state, gy, gs, keep, mask_hh)
    computed = []
    for engine, fn in engines(cell, keep, masks).items():
        if fn is None:
            continue
        computed.append(engine)
        out, grads = _torch(fn, params, x, state, gy, gs, mask_hh)
        for a, b in zip(out, out_ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"{engine}: outputs")
        assert set(grads) == set(g_ref), engine
        for key, g in grads.items():
            assert g is not None, f"{engine}: no gradient for {key}"
            np.testing.assert_allclose(g.numpy(), g_ref[key], rtol=1e-9, atol=1e-11, err_msg=f"{engine}: d{key}")
    assert {"autograd", "fused", "generic"} <= set(computed)


def test_every_declarer_takes_some_configuration():
    """The enumeration above exercises each specialised loop and kernel, not only their refusals."""
    taken = set()
    for name, options, masks in CONFIGS:
        cell = make_cell(name, **options)
        taken |= {engine for engine, fn in engines(cell, None, masks).items() if fn is not None}
    assert {f"loop:{loop.name}" for loop in capability.LOOPS} | {"per_token_step", "native_sequence"} <= taken
