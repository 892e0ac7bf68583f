"""Inputs, masks and the gradient harness shared by the tests of the fused engine's loops."""
import math

import torch

from gatedrnn.cells import make_cell
from gatedrnn.torch_engine import capability
from gatedrnn.torch_engine.autograd_loop import autograd_layer
from gatedrnn.torch_engine.function import run_loop
from gatedrnn.torch_engine.functional import run_layer

from .stepping import plausible

CASES = [
    ("lstm", {}), ("lstm", {"forget_bias": 1.0}), ("lstm", {"bias": False}),
    ("lstm", {"bias": False, "forget_bias": 0.5}),
    ("peephole", {}), ("peephole", {"bias": False}), ("cifg", {}), ("cifg", {"forget_bias": 1.0}),
    ("gru", {}), ("gru", {"bias": False}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}),
    ("rnn", {"bias": False}),
    *[("mogrifier", {"rounds": r}) for r in range(0, 6)], ("mogrifier", {"rank": 2}),
    ("mogrifier", {"rounds": 4, "rank": 3, "bias": False}),
    ("lstm", {"layer_norm": True}), ("lstm", {"layer_norm": True, "bias": False, "forget_bias": 1.0}),
    ("peephole", {"layer_norm": True}), ("cifg", {"layer_norm": True}),
    ("gru", {"layer_norm": True}), ("gru", {"layer_norm": True, "bias": False}),
    ("rnn", {"layer_norm": True}), ("rnn", {"layer_norm": True, "nonlinearity": "relu"}),
    ("mogrifier", {"rounds": 0, "layer_norm": True}),
    ("mingru", {}), ("mingru", {"bias": False}), ("minlstm", {}), ("minlstm", {"bias": False}),
    ("slstm", {}), ("slstm", {"num_heads": 2}), ("slstm", {"num_heads": 3, "bias": False}),
    ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh"}), ("indrnn", {"bias": False}),
]
# with zoneout-like keep masks and state dropout (mask_hh)
MASK_CASES = [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}),
              ("rnn", {"nonlinearity": "relu"}), ("mogrifier", {"rounds": 3}), ("mogrifier", {"rounds": 4, "rank": 2}),
              ("lstm", {"layer_norm": True}), ("peephole", {"layer_norm": True}), ("gru", {"layer_norm": True}),
              ("rnn", {"layer_norm": True}), ("mingru", {}), ("minlstm", {}), ("slstm", {}),
              ("indrnn", {}), ("indrnn", {"nonlinearity": "tanh"})]
MASK_KINDS = ("zoneout", "zoneout-h", "expectation", "padding", "state-dropout", "zoneout+state-dropout")


def _id(case):
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


def make_inputs(name, options, T=5, B=3, I=4, H=6, seed=0):
    cell = make_cell(name, **options)
    gen = torch.Generator().manual_seed(seed)
    params = {}
    for s in cell.param_spec(I, H):
        params[s.name] = (torch.rand(s.shape, generator=gen, dtype=torch.float64) * 2 - 1) / math.sqrt(H)
    if cell.name in ("rnn",) and cell.nonlinearity == "relu":
        params["weight_hh"] = params["weight_hh"] * 0.5
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    state = tuple(torch.randn(B, size, generator=gen, dtype=torch.float64) * 0.5 for size in cell.state_sizes(H))
    return cell, params, x, plausible(cell, state)


def make_masks(kind, cell, params, x, seed=2, state=None):
    """``(params, keep)`` for one kind of mask: zoneout's random 0/1 keep masks (on every state
    element, or on ``h`` alone), their expectation in evaluation, a padded batch's ``(T, B, 1)``
    masks, or state dropout's ``mask_hh``; ``state``: the states' sizes where not the default's."""
    T, B, _ = x.shape
    gen = torch.Generator().manual_seed(seed)
    sizes = [s.shape[-1] for s in (state if state is not None else make_inputs(cell.name, cell.config, T=T, B=B)[3])]
    keep = None
    if "zoneout" in kind:
        keep = tuple((torch.rand(T, B, n, generator=gen) < 0.3).double() for n in sizes)
        if kind.startswith("zoneout-h"):
            keep = (keep[0],) + (None,) * (len(sizes) - 1)
    elif kind == "expectation":
        keep = tuple(torch.full((T, 1, 1), 0.25, dtype=torch.float64) for _ in sizes)
    elif kind == "padding":
        lengths = torch.tensor([T, T - 2, 1])[:B]
        valid = (torch.arange(T)[:, None] < lengths[None, :]).double()[..., None]
        keep = tuple(1.0 - valid for _ in sizes)
    if "state-dropout" in kind:
        R = params["weight_hh"].shape[-1]  # what weight_hh reads (IndRNN's is (H,))
        mask = (torch.rand(B, R, generator=gen) >= 0.4).double() / 0.6
        params = {**params, "mask_hh": mask}
    return params, keep


def outputs_and_grads(fn, cell, params, x, state, seed=1):
    consts = {k: v for k, v in params.items() if k.startswith("mask_")}  # not parameters
    params = {k: v for k, v in params.items() if k not in consts}
    leaves = [t.clone().requires_grad_() for t in (*params.values(), x, *state)]
    p = {**dict(zip(params, leaves[: len(params)])), **consts}
    y, state_n = fn(cell, p, leaves[len(params)], tuple(leaves[len(params) + 1 :]))
    gen = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=gen, dtype=torch.float64).to(y.dtype)).sum()
    for s in state_n:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=torch.float64).to(s.dtype)).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    names = [*params, "x", *(f"state{k}" for k in range(len(state)))]
    return [y.detach(), *(s.detach() for s in state_n)], dict(zip(names, grads))


def run_fast(cell, p, x, state, keep=None):
    """The specialised loop the capability table picks for ``cell``, run as the engine runs it."""
    return run_loop(capability.loop_for(cell), cell, p, x, state, keep)


def fast_path(cell, p, x, state):
    assert capability.supports(cell, p, x), "expected the specialised loop to take this configuration"
    return run_fast(cell, p, x, state)


def generic_path(cell, p, x, state, keep=None):
    enabled, capability.ENABLED = capability.ENABLED, False
    try:
        return run_layer(cell, p, x, state, keep, engine="fused")
    finally:
        capability.ENABLED = enabled


def autograd_twin(cell, p, x, state):
    return autograd_layer(cell, p, x, state)


