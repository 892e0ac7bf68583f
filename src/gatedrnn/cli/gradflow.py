"""``gatedrnn gradflow``: how far back a last-step loss reaches, per cell, before and after training."""
from __future__ import annotations

from .compare import cell_options, parse_cells
from .flags import add_cell_option_flags


def add_arguments(p):
    p.add_argument("--cells", default="rnn,lstm", type=parse_cells, help="comma-separated cells (default rnn,lstm)")
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=4, help="random batches the norms are averaged over")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=300, help="Adam steps on the adding problem before the second measurement")
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gradflow-out", help="directory for gradflow.csv and gradflow.png")
    add_cell_option_flags(p)


def run(args) -> int:
    from ..cells import make_cell
    from ..experiments.gradflow import describe_zeros, gradient_flow, write_flow

    for c in args.cells:
        make_cell(c)
    flows = []
    lags = [lag for lag in (1, 10, 25, 50, 100, 200) if lag < args.seq_len]
    print(f"mean ||dL_T/dh_t|| at lags {lags} (steps before the loss)")
    for cell in args.cells:
        fl = gradient_flow(cell, args.seq_len, args.hidden_size, args.batches, args.batch_size,
                           args.train_steps, args.lr, args.seed, cell_options(args))
        flows.append(fl)
        T = args.seq_len
        for stage, h in (("init", fl.init), (f"trained {fl.train_steps}", fl.trained)):
            print(f"{cell:<10} {stage:<12} " + "  ".join(f"{h[T - 1 - lag]:.2e}" for lag in lags), flush=True)
    for line in describe_zeros(flows):
        print(line)
    paths = write_flow(flows, args.out)
    print(f"wrote {paths['csv']}, {paths['png']}")
    return 0
