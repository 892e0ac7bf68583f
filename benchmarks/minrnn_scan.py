"""minGRU's recurrence on CPU: the sequential pass against the log-space parallel scan.

    PYTHONPATH=src python benchmarks/minrnn_scan.py --threads 1 --rounds 7

Only the recurrence ``h_t = a_t h_{t-1} + b_t`` over ``(T, B, H)`` (T=1024, B=32, H=512), forward and
backward, from gates already computed: the sequential pass of ``loops/minrnn.py`` (one ``addcmul``
per step, the reverse recurrence for the backward) against the log-space scan minGRU-pytorch runs
(``cumsum``, ``logcumsumexp``, ``exp`` over time, differentiated by autograd). Interleaved rounds,
the median of per-round ratios, as ``gatedrnn bench`` does.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def sequential(a, b, h0, dy):
    T = a.shape[0]
    Hs = a.new_empty(T + 1, *a.shape[1:])
    Hs[0] = h0
    for t in range(T):
        torch.addcmul(b[t], a[t], Hs[t], out=Hs[t + 1])
    dh = torch.zeros_like(h0)
    D = torch.empty_like(a)
    for t in reversed(range(T)):
        torch.add(dy[t], dh, out=D[t])
        dh = a[t] * D[t]
    return D * Hs[:-1], D  # the gradients of a and b


def log_scan(log_a, log_b, log_h0, dy):
    log_a, log_b = log_a.detach().requires_grad_(), log_b.detach().requires_grad_()
    a_star = torch.cat([torch.zeros_like(log_h0)[None], log_a]).cumsum(0)
    values = torch.cat([log_h0[None], log_b])
    h = (a_star + (values - a_star).logcumsumexp(0)).exp()[1:]
    h.backward(dy)
    return log_a.grad, log_b.grad


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    T, B, H = args.seq_len, 32, 512
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(T, B, H, generator=gen) * 0.9 + 0.05
    b = torch.rand(T, B, H, generator=gen) + 0.1
    h0 = torch.rand(B, H, generator=gen) + 0.1
    dy = torch.randn(T, B, H, generator=gen)
    la, lb, lh0 = a.log(), b.log(), h0.log()
    # the same function: the log scan's gradients with respect to log a, log b are a * da, b * db
    da, db = sequential(a, b, h0, dy)
    gla, glb = log_scan(la, lb, lh0, dy)
    err = max(((gla - a * da).norm() / (a * da).norm()).item(), ((glb - b * db).norm() / (b * db).norm()).item())
    fns = {"sequential": lambda: sequential(a, b, h0, dy), "log_scan": lambda: log_scan(la, lb, lh0, dy)}
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for r in range(args.rounds):
        for name in list(fns)[r % 2:] + list(fns)[: r % 2]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    ratio = statistics.median(x / y for x, y in zip(times["log_scan"], times["sequential"]))
    print(f"T={T} B={B} H={H} threads={args.threads} rounds={args.rounds} (same gradients: rel. error {err:.1e})")
    for k, v in times.items():
        print(f"{k:<11} {1e3 * statistics.median(v):8.1f} ms")
    print(f"log_scan / sequential: {ratio:.2f} (median of per-round ratios)")


if __name__ == "__main__":
    main()
