"""``gatedrnn gradcheck``: the hand-derived backward of each cell against central differences."""
from __future__ import annotations

from ..cells import CELLS
from ..reference import gradcheck

#: the configurations checked by default: every cell and the options that change its math
DEFAULT_CASES = {
    "rnn": [{}, {"nonlinearity": "relu"}, {"layer_norm": True}],
    "lstm": [{}, {"forget_bias": 1.0}, {"proj_size": 2}, {"layer_norm": True},
             {"drop_gates": ("i", "o")}, {"output_activation": "identity"}],
    "peephole": [{}, {"proj_size": 2, "layer_norm": True}],
    "cifg": [{}, {"layer_norm": True}],
    "gru": [{}, {"layer_norm": True}],
    "mogrifier": [{}, {"rank": 2}, {"rounds": 4, "proj_size": 2}],
    "slstm": [{}, {"num_heads": 2}],
    "mingru": [{}],
    "minlstm": [{}],
    "indrnn": [{}, {"nonlinearity": "tanh"}],
}


def add_arguments(p):
    p.add_argument("--cell", nargs="+", default=list(CELLS), metavar="NAME",
                   help=f"cells to check (default: all of {', '.join(CELLS)})")
    p.add_argument("--seq-len", type=int, default=7)
    p.add_argument("--batch-size", type=int, default=3)
    p.add_argument("--tolerance", type=float, default=1e-6, help="largest relative error accepted")
    p.add_argument("--zoneout", type=float, default=0.0, help="also check with zoneout masks of this rate")
    p.add_argument("--dropout-state", type=float, default=0.0,
                   help="also check with a variational dropout mask of this rate on the recurrent state")


def run(args) -> int:
    from . import UsageError

    unknown = [c for c in args.cell if c not in CELLS]
    if unknown:
        from ..cells import make_cell

        make_cell(unknown[0])  # raises with the close names
    if args.seq_len <= 0 or args.batch_size <= 0:
        raise UsageError(f"--seq-len and --batch-size must be positive, got {args.seq_len} and {args.batch_size}")
    if not 0 <= args.dropout_state < 1:
        raise UsageError(f"--dropout-state must be in [0, 1), got {args.dropout_state}")
    worst = 0.0
    print(f"{'cell':<10} {'options':<42} {'gradient':<18} {'rel. error':>10}")
    for name in args.cell:
        # a cell without what a flag acts on (zoneout, a recurrent product) is checked without it
        zoneout = args.zoneout if CELLS[name].supports_zoneout else 0.0
        dropout_state = args.dropout_state if CELLS[name].has_recurrent_product else 0.0
        skipped = [flag for flag, given, used in (("zoneout", args.zoneout, zoneout),
                                                   ("dropout-state", args.dropout_state, dropout_state)) if given != used]
        for options in DEFAULT_CASES.get(name, [{}]):
            errors = gradcheck(name, seq_len=args.seq_len, batch=args.batch_size,
                               zoneout=zoneout or None, dropout_state=dropout_state or None, **options)
            opts = ", ".join([f"{k}={v}" for k, v in options.items()] + [f"no {f}" for f in skipped]) or "-"
            for key, err in errors.items():
                flag = "" if err < args.tolerance else "  FAIL"
                print(f"{name:<10} {opts:<42} {key:<18} {err:>10.2e}{flag}")
                worst = max(worst, err)
    verdict = "ok" if worst < args.tolerance else "FAILED"
    print(f"largest relative error {worst:.2e} (tolerance {args.tolerance:.0e}): {verdict}")
    return 0 if worst < args.tolerance else 1
