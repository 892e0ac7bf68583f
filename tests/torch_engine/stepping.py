"""Shared by the tests of the single-step kernels behind ``step()`` (test_native.py for
``torch._VF``'s, test_generation.py for ``generation.lstm_step``): a module stepped on the fused engine against
the same module on the autograd engine, whose ``step()`` runs the cell's own step."""
import torch

import gatedrnn
from gatedrnn.cells import make_cell


def plausible(cell, states):
    """Random states made into states the cell can reach: the elements it keeps positive (the
    sLSTM's normaliser ``n``) as ``|s| + 0.5``. ``cell`` is a cell, a module or a cell name."""
    cell = make_cell(cell) if isinstance(cell, str) else getattr(cell, "cell", cell)
    return type(states)(s.abs().detach().add(0.5).requires_grad_(s.requires_grad) if name in cell.positive_state else s
                        for name, s in zip(cell.state_names, states))


def module_pair(name, options):
    """Two 2-layer float64 modules, ``(5 -> 6)``, with the same weights: fused and autograd."""
    modules = []
    for engine in ("fused", "autograd"):
        torch.manual_seed(0)
        modules.append(gatedrnn.layer(name, 5, 6, num_layers=2, engine=engine, dtype=torch.float64, **options))
    return modules


def assert_steps_match(fast, slow, steps=4):
    """``steps`` calls of ``step()`` from one random state: outputs, and the gradients of a loss on
    the outputs and the final state w.r.t. the inputs, the initial state and every parameter."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(steps, 3, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    hx = tuple(torch.randn(2, 3, 6, dtype=torch.float64, generator=gen, requires_grad=True)
               for _ in fast.state_sizes)
    outs = []
    for module in (fast, slow):
        state, ys = (hx if len(hx) == 2 else hx[0]), []
        for t in range(steps):
            y, state = module.step(x[t], state)
            ys.append(y)
        final = state if isinstance(state, tuple) else (state,)
        loss = torch.stack(ys).pow(2).sum() + final[-1].sum()
        outs.append((torch.stack(ys), torch.autograd.grad(loss, [x, *hx, *module.parameters()])))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
