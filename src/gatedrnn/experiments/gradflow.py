"""How far back a loss reaches: the norm of d(loss at the last step) / d(h_t) for every step t.

    flow = gradient_flow("lstm", seq_len=100, hidden_size=64, batches=4, train_steps=300)
    flow.init, flow.trained    # (T,) mean over examples of ||dL_T / dh_t||, t = 0 .. T-1

The loss is the adding problem's squared error read at the last step. The recurrent module runs
one step per call so that every ``h_t`` is a node of the graph; ``h_t`` is the state the step
returns, the cell state ``c_t`` held fixed (for the LSTM family its gradient is reported too).
A plain RNN's norm decays geometrically with the lag; the LSTM's additive cell path is what
keeps it alive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.tasks import make_task
from .compare import build_model, fit, options_for


@dataclass
class Flow:
    cell: str
    seq_len: int
    hidden_size: int
    train_steps: int
    init: np.ndarray  # (T,) mean ||dL/dh_t||
    trained: np.ndarray  # (T,)
    init_c: np.ndarray | None = None  # (T,) mean ||dL/dc_t||, LSTM family only
    trained_c: np.ndarray | None = None


def hidden_gradient_norms(model, x: torch.Tensor, y: torch.Tensor):
    """Mean over the batch of ``||d loss_b / d h_t||`` (and ``c_t``), each ``(T,)``.

    ``x`` ``(T, B, I)``, ``y`` ``(B, O)``; ``loss_b`` is example ``b``'s squared error at the last
    step, so each example's gradient is its own (the examples do not interact)."""
    rnn, state, hs, cs = model.rnn, None, [], []
    for t in range(x.shape[0]):
        _, state = rnn(x[t : t + 1], state)
        h = state[0] if isinstance(state, tuple) else state  # (L, B, R)
        hs.append(h)
        if isinstance(state, tuple):
            cs.append(state[1])
    loss = (model.head(hs[-1][-1]) - y).pow(2).sum()
    # the last c_T does not reach a loss read from h_T: its gradient is zero, not missing
    grads = torch.autograd.grad(loss, hs + cs, allow_unused=True)
    grads = [torch.zeros_like(s) if g is None else g for s, g in zip(hs + cs, grads)]
    norms = torch.stack([g[-1].norm(dim=-1).mean() for g in grads]).detach().numpy()  # last layer
    T = x.shape[0]
    return norms[:T], (norms[T:] if cs else None)


def _averaged(model, task, batches, batch_size, rng):
    hs, cs = [], []
    for _ in range(batches):
        b = task.sample(batch_size, rng)
        h, c = hidden_gradient_norms(model, b.x, b.y)
        hs.append(h)
        cs.append(c)
    return np.mean(hs, 0), (np.mean(cs, 0) if cs[0] is not None else None)


def gradient_flow(cell: str, seq_len: int = 100, hidden_size: int = 64, batches: int = 4,
                  batch_size: int = 32, train_steps: int = 300, lr: float = 1e-2, seed: int = 0,
                  cell_options: dict | None = None) -> Flow:
    """The gradient norms at initialisation and after ``train_steps`` of Adam on the adding task."""
    if seq_len < 2 or batches <= 0 or batch_size <= 0 or train_steps < 0:
        raise ValueError(f"need seq_len >= 2, batches > 0, batch_size > 0, train_steps >= 0; got "
                         f"{seq_len}, {batches}, {batch_size}, {train_steps}")
    task = make_task("adding", seq_len)
    torch.manual_seed(seed)
    model = build_model(cell, task, hidden_size, options_for(cell, cell_options or {}))
    probe_seed = [seed, 1]  # the same probe batches before and after training
    init_h, init_c = _averaged(model, task, batches, batch_size, np.random.default_rng(probe_seed))
    fit(model, task, train_steps, np.random.default_rng(seed), batch_size=batch_size, lr=lr)
    trained_h, trained_c = _averaged(model, task, batches, batch_size, np.random.default_rng(probe_seed))
    return Flow(cell, seq_len, hidden_size, train_steps, init_h, trained_h, init_c, trained_c)


def zero_from(norms, skip_last: bool = False) -> int | None:
    """The smallest lag (steps before the loss) at which ``norms`` ``(T,)`` is exactly 0, or None.

    A float32 norm that underflows is exactly 0 and falls off a log axis, so figure, CSV and
    console say where. ``skip_last``: lag 0 is 0 by construction (``c_T`` for a loss read from ``h_T``).
    """
    T = len(norms)
    for lag in range(1 if skip_last else 0, T):
        if norms[T - 1 - lag] == 0:
            return lag
    return None


def zeros_of(flows: list[Flow]) -> list[tuple[str, str, str, int]]:
    """(cell, stage, "h" or "c", lag) for every curve that reaches exactly 0, with its first lag."""
    found = []
    for fl in flows:
        for stage, h, c in (("init", fl.init, fl.init_c), ("trained", fl.trained, fl.trained_c)):
            for which, values in (("h", h), ("c", c)):
                lag = None if values is None else zero_from(values, skip_last=which == "c")
                if lag is not None:
                    found.append((fl.cell, stage, which, lag))
    return found


def describe_zeros(flows: list[Flow]) -> list[str]:
    """One line per curve that reaches exactly 0: what the console prints."""
    return [f"{cell} {stage}: ||dL/d{which}_t|| is exactly 0 from lag {lag} on (underflow: off the log axis)"
            for cell, stage, which, lag in zeros_of(flows)]


def write_flow(flows: list[Flow], out_dir) -> dict:
    """``gradflow.csv`` (cell, stage, t, lag, grad_h, grad_c) and ``gradflow.png`` under ``out_dir``."""
    import csv
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "gradflow.csv", "png": out / "gradflow.png"}
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "stage", "t", "lag", "grad_h", "grad_c", "note"])
        for fl in flows:
            for stage, h, c in (("init", fl.init, fl.init_c), ("trained", fl.trained, fl.trained_c)):
                T = len(h)
                for t in range(T):
                    zero = [f"grad_{k} exactly 0 (underflow)" for k, v in (("h", h), ("c", c))
                            if v is not None and v[t] == 0 and not (k == "c" and t == T - 1)]
                    w.writerow([fl.cell, stage, t, T - 1 - t, f"{h[t]:.6e}", "" if c is None else f"{c[t]:.6e}",
                                "; ".join(zero)])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    colours = {}
    for fl in flows:
        lag = np.arange(len(fl.init))[::-1]  # steps before the loss
        line, = ax.plot(lag, fl.trained, lw=1.8, label=f"{fl.cell}, after {fl.train_steps} steps")
        ax.plot(lag, fl.init, lw=1.2, ls="--", color=line.get_color(), label=f"{fl.cell}, at initialisation")
        colours[fl.cell] = line.get_color()
    ax.set_yscale("log")
    zeros = [z for z in zeros_of(flows) if z[2] == "h"]  # the figure shows h
    for cell, stage, _, lag in zeros:  # a zero has no place on a log axis: a line where the curve ends
        ax.axvline(lag, color=colours[cell], ls=":" if stage == "init" else "-.", lw=1,
                   label=f"{cell}, {'at initialisation' if stage == 'init' else 'trained'}: exactly 0 from lag {lag}")
    ax.set_xlabel("steps before the loss (T - 1 - t)")
    ax.set_ylabel("mean ||dL_T / dh_t||")
    first = flows[0]
    ax.set_title(f"gradient flow on the adding problem, T={first.seq_len}, hidden {first.hidden_size}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths["png"])
    plt.close(fig)
    paths["zeros"] = zeros_of(flows)
    return paths


__all__ = ["Flow", "gradient_flow", "hidden_gradient_norms", "write_flow", "zero_from", "zeros_of", "describe_zeros"]
