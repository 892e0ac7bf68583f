"""Generation's per-token step: a whole stack's token in one compiled call, or one LSTM-family
layer in a handful of out-of-place operations.

``stack_step`` runs every layer of a module's token (products, elementwise work, the Mogrifier's
rounds) in one call of ``csrc/step.cpp`` where the compiled kernels are at hand, for the
configurations ``capability.COMPILED_STEP`` declares (the RNN, the GRU, the LSTM family, the
Mogrifier, IndRNN, minGRU, minLSTM and the sLSTM), under ``torch.no_grad`` on the CPU; it
returns ``None`` everywhere else and the module's eager step runs.

``torch.nn.LSTM`` called one token at a time costs milliseconds per call on CPU, and the cell's
own ``step`` pays for its cache and block dicts, which at batch 1 cost more than the arithmetic.
``lstm_step`` computes what ``torch._VF.lstm_cell`` does not (peepholes, CIFG, ``forget_bias``,
the Mogrifier's rounds) for the configurations ``capability.PER_TOKEN_STEP`` declares.
"""
from __future__ import annotations

import torch

from . import compiled
from .capability import COMPILED_STEP, PER_TOKEN_STEP, accepts
from .loops.common import combined_bias
from .ops import autocast_of, transforms_active

#: the most rows of a batch the compiled step takes: it reads each weight row once for all rows of
#: the batch, without a GEMM's blocking, and at 32 rows it no longer beats the eager step's
#: products (benchmarks/RESULTS.md, "Generation's compiled step and the batch size")
MAX_ROWS = 16

#: csrc/step.cpp's kinds of layer
_KINDS = {("rnn", "tanh"): 0, ("rnn", "relu"): 1, "gru": 2, "lstm": 3, "peephole": 3, "cifg": 3, "mogrifier": 3,
          ("indrnn", "relu"): 4, ("indrnn", "tanh"): 5, "mingru": 6, "minlstm": 7, "slstm": 8}


def stack_step(module, input, hx):
    """``module.step(input, hx)`` (forward in time, every layer) computed by one compiled call, or
    ``None`` where it does not apply: gradients enabled, another engine than ``auto``/``fused``,
    a configuration ``COMPILED_STEP`` does not declare, masks that act (training-mode dropouts,
    zoneout), autocast, ``torch.func`` transforms, tracing or ``torch.compile``, no compiled kernels
    (``GATEDRNN_CPP=0``, no compiler), a batch of more than ``MAX_ROWS`` rows, or any input the
    kernel does not take as it is (another device or dtype, non-contiguous, shapes that do not fit;
    the eager step then says what is wrong). The parameters are read where they are at each call: a change in place, a replaced
    ``.data``, ``load_state_dict`` or ``.to()`` is seen by the next token."""
    if torch.is_grad_enabled() or module.engine not in ("auto", "fused") or not compiled.ENABLED:
        return None
    if not isinstance(input, torch.Tensor) or input.device.type != "cpu" or input.dim() not in (1, 2):
        return None
    if input.dim() == 2 and input.shape[0] > MAX_ROWS:
        return None
    plan = _plan(module)
    if plan is None:
        return None
    if (module.training and module.dropout) or module.regularisation.active(module.training):
        return None
    if autocast_of(input) is not None or transforms_active(input):
        return None
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    kernels = compiled.pointwise()
    args, layers, parts = plan
    batched = input.dim() == 2
    x = input if batched else input.unsqueeze(0)
    if hx is None:
        state = [x.new_zeros((module.num_layers, x.shape[0], module.hidden_size))] * parts
    else:
        state = list(hx) if isinstance(hx, tuple) else [hx]
        if len(state) != parts or not all(isinstance(s, torch.Tensor) and s.dim() == input.dim() + 1 for s in state):
            return None
        if not batched:
            state = [s.unsqueeze(1) for s in state]
    out = kernels.stack_step(*args, x, state, layers)
    if not out:
        return None
    y, state_n = out[0], tuple(out[1:])
    if not batched:
        y, state_n = y.squeeze(0), tuple(s.squeeze(1) for s in state_n)
    return y, (state_n if parts > 1 else state_n[0])


def _plan(module):
    """``(configuration arguments, per-layer parameter lists, parts of the state)`` for
    ``module``, or ``None``; kept until a parameter object is replaced (the lists hold the
    parameters themselves, not copies)."""
    params = tuple(module._parameters.values())
    key = tuple(map(id, params))
    cached = module.__dict__.get("_compiled_step")
    if cached is not None and cached[0] == key:
        return cached[1]
    cell, plan = module.cell, None
    if not module.bidirectional and accepts(COMPILED_STEP, cell):
        kernels = compiled.pointwise()
        if kernels is not None and hasattr(kernels, "stack_step"):
            kind = _KINDS[(cell.name, cell.nonlinearity) if cell.name in ("rnn", "indrnn") else cell.name]
            rounds = getattr(cell, "rounds", 0)
            args = (kind, bool(cell.bias), bool(getattr(cell, "peephole", False)), bool(getattr(cell, "coupled", False)),
                    float(getattr(cell, "forget_bias", 0.0)), rounds, getattr(cell, "rank", None) is not None)
            layers = [list(module.layer_params(k).values()) for k in range(module.num_layers)]
            plan = (args, layers, len(module.state_sizes))
    module.__dict__["_compiled_step"] = (key, plan)
    return plan


def lstm_step(cell, p):
    """One step ``(x (B, I), (h, c)) -> (h, c)`` of an LSTM-family layer, autograd-transparent; or
    ``None`` where the capability table leaves the configuration to the cell's own step. ``p``
    holds the parameters themselves, and every view of them is taken per call, so updates in
    place and a replaced ``.data`` are both seen."""
    if not accepts(PER_TOKEN_STEP, cell):
        return None
    G = cell.num_gates
    H = p["weight_hh"].shape[0] // G
    rounds = getattr(cell, "rounds", 0)

    def mog(v, name, k):  # v @ Q_k^T (R_k^T); with ``rank``, through the two thin factors
        if cell.rank is None:
            return v @ p[f"weight_{name}"][k].t()
        return (v @ p[f"weight_{name}_right"][k].t()) @ p[f"weight_{name}_left"][k].t()

    def step(x, state):
        h, c = state
        if rounds:
            zero = x.new_zeros(())
            for j in range(1, rounds + 1):  # 2 sigma(.) * v in one addcmul
                if j % 2:
                    x = torch.addcmul(zero, torch.sigmoid(mog(h, "q", (j - 1) // 2)), x, value=2.0)
                else:
                    h = torch.addcmul(zero, torch.sigmoid(mog(x, "r", j // 2 - 1)), h, value=2.0)
        bias = combined_bias(cell, p, G, H, x)
        w_ih, w_hh = p["weight_ih"].t(), p["weight_hh"].t()
        peep = p["weight_peephole"].split(H) if cell.peephole else None  # w_i, w_f, w_o
        a = x @ w_ih if bias is None else torch.addmm(bias, x, w_ih)
        a = a.addmm(h, w_hh)
        if cell.coupled:  # f, g, o; c = f c_prev + (1 - f) g = g + f (c_prev - g)
            f, g, o = a.chunk(3, 1)
            f, g = torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(g, f, c - g)
        else:
            i, f, g, o = a.chunk(4, 1)
            if peep is not None:
                i, f = torch.addcmul(i, c, peep[0]), torch.addcmul(f, c, peep[1])
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(f * c, i, g)
        if peep is not None:
            o = torch.addcmul(o, c, peep[-1])
        return torch.sigmoid(o) * torch.tanh(c), c

    return step
