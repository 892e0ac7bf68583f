"""Training steps per second of `gatedrnn train`'s default model under thread counts and OpenMP
wait policies, each variant a fresh process (the policy is read when OpenMP starts), interleaved.

    python benchmarks/threads.py --seconds 20 --rounds 3
    python benchmarks/threads.py --variants t1,t2,t2-passive --seconds 20 --rounds 5
    python benchmarks/threads.py --variants t1,t2,t2-passive --competitor   # one other CPU-bound process

Each run builds the default language model (LMConfig's defaults, a vocabulary of 100), warms up
for 3 steps, then counts full training steps (forward, backward, clip, AdamW) on random tokens
of TrainConfig's default batch for ``--seconds``. Variants run one after another in rounds, the
order rotated each round; the load average is printed beside every figure. With ``--competitor``
one single-threaded busy loop runs beside every run (``first_hour.py``'s). Ratios of steps per
second within a round are what to read on a shared machine; absolute rates mean little.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from first_hour import Competitor  # noqa: E402
#: name -> (threads, environment)
VARIANTS = {
    "t1": (1, {}),
    "t2": (2, {}),
    "t2-passive": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "t1-passive": (1, {"OMP_WAIT_POLICY": "PASSIVE"}),
    "t2-active": (2, {"OMP_WAIT_POLICY": "ACTIVE"}),
}

CHILD = r"""
import json, sys, time
import torch
import torch.nn.functional as F
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.training import TrainConfig
threads, seconds = int(sys.argv[1]), float(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = TrainConfig(steps=1)
model = LanguageModel(LMConfig(vocab_size=100))
opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
x = torch.randint(0, 100, (cfg.seq_len + 1, cfg.batch_size))
state = None
def step():
    global state
    logits, state = model(x[:-1], state)
    loss = F.cross_entropy(logits.reshape(-1, 100), x[1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
    opt.step()
    state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
for _ in range(3):
    step()
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    step()
    n += 1
print(json.dumps({"steps_per_s": n / (time.monotonic() - t0), "steps": n}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="t1,t2,t2-passive", help=f"of {', '.join(VARIANTS)}")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--competitor", action="store_true", help="one other CPU-bound process beside every run")
    args = p.parse_args()
    names = args.variants.split(",")
    rates = {n: [] for n in names}
    print(f"{os.cpu_count()} CPUs; {args.seconds:g} s per run"
          + ("; one competing CPU-bound process" if args.competitor else ""), flush=True)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            threads, env = VARIANTS[name]
            load = "%.2f %.2f %.2f" % os.getloadavg()
            with Competitor(args.competitor):
                out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(args.seconds)], check=True,
                                     capture_output=True, text=True,
                                     env={**os.environ, **env, "PYTHONPATH": str(ROOT / "src")}).stdout
            rate = json.loads(out.strip().splitlines()[-1])["steps_per_s"]
            rates[name].append(rate)
            print(f"round {r} {name:11s} {rate:6.2f} steps/s  (load before {load})", flush=True)
    base = names[0]
    for name in names:
        ratios = [a / b for a, b in zip(rates[name], rates[base])]
        print(f"{name:11s} median {statistics.median(rates[name]):6.2f} steps/s; per-round ratio to {base}: "
              f"median {statistics.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
