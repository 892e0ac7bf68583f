"""``torch.compile`` (default inductor backend) of a small model holding a gatedrnn module.

For each configuration: a 2-layer module (``batch_first``) and a linear head, trained for
``--steps`` SGD steps eagerly and compiled from the same weights; prints the compiled run's
first-step time (the compile, which happens on the first call), the median of its later steps
against eager's, and the largest relative difference of the losses and of the final parameters.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/compile_time.py --json benchmarks/compile_time.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import gatedrnn

AUTOGRAD = "autograd"  # the plain autograd loop
CONFIGS = {
    "lstm-auto": ("lstm", {}),  # torch.nn's own kernel (torch._VF.lstm)
    "lstm-fused": ("lstm", {"forget_bias": 1.0}),  # an option torch.nn lacks: the fused engine
    "gru-autograd": ("gru", {"engine": AUTOGRAD}),  # the plain loop over the cell, traced by dynamo
}


class TinyModel(torch.nn.Module):
    def __init__(self, cell, I, H, **options):
        super().__init__()
        self.rnn = gatedrnn.layer(cell, I, H, num_layers=2, batch_first=True, **options)
        self.head = torch.nn.Linear(self.rnn.state_sizes[0], 1)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def train(model, x, target, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        losses.append(loss.item())
    return losses, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=16, help="input and hidden size")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    B, T, I, H = 4, 8, args.size, args.size
    rows = []
    for name, (cell, options) in CONFIGS.items():
        torch._dynamo.reset()
        torch.manual_seed(0)
        eager = TinyModel(cell, I, H, **options)
        compiled = TinyModel(cell, I, H, **options)
        compiled.load_state_dict(eager.state_dict())
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(B, T, I, generator=gen)
        target = 0.1 * x.sum(-1, keepdim=True).cumsum(1)
        eager_losses, eager_times = train(eager, x, target, args.steps)
        losses, times = train(torch.compile(compiled), x, target, args.steps)
        loss_err = max(abs(a - b) / abs(b) for a, b in zip(losses, eager_losses))
        param_err = max(((p - q).abs().max() / q.abs().max()).item()
                        for p, q in zip(compiled.parameters(), eager.parameters()))
        row = {"config": name, "first_step_s": times[0], "later_step_median_s": statistics.median(times[1:]),
               "eager_step_median_s": statistics.median(eager_times[1:]), "loss_max_rel_diff": loss_err,
               "param_max_rel_diff": param_err, "loss_first": losses[0], "loss_last": losses[-1]}
        rows.append(row)
        print(f"{name:14s} compile+first step {times[0]:6.1f} s  later steps {row['later_step_median_s'] * 1e3:7.1f} ms "
              f"(eager {row['eager_step_median_s'] * 1e3:7.1f} ms)  loss rel diff {loss_err:.1e}  "
              f"param rel diff {param_err:.1e}  loss {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)
    if args.json:
        meta = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.processor(),
                "threads": torch.get_num_threads(), "B": B, "T": T, "I": I, "H": H, "steps": args.steps}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
