"""``gatedrnn inspect``: a trained language model's cell activations over a text, as one HTML page."""
from __future__ import annotations

from pathlib import Path


def add_arguments(p):
    p.add_argument("run", help="a run folder of gatedrnn train (best.pt, else latest.pt) or a checkpoint file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--text", help="the text to show")
    g.add_argument("--text-file", metavar="PATH", help="read the text from a file")
    p.add_argument("--unit", type=int, default=None, help="the unit to colour by (default: the one most correlated with a feature)")
    p.add_argument("--layer", type=int, default=-1, help="layer, 0 first, negative from the top (default -1)")
    p.add_argument("--kind", choices=("c", "h"), default="c", help="cell state c or output h (default c)")
    p.add_argument("--top", type=int, default=5, help="units listed per feature (default 5)")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--allow-unverified", action="store_true",
                   help="load a checkpoint that carries no SHA-256 digest (only one you trust)")
    p.add_argument("--out", default="inspect.html", help="the page to write (default inspect.html)")


def run(args) -> int:
    from ..experiments.inspect import inspect_text
    from ..training.loop import load_model
    from . import UsageError

    text = args.text if args.text is not None else Path(args.text_file).read_text(encoding="utf-8")
    if args.top <= 0:
        raise UsageError(f"--top must be positive, got {args.top}")
    model, vocab, _ = load_model(args.run, args.checkpoint, allow_unverified=args.allow_unverified)
    page = inspect_text(model, vocab, text, kind=args.kind, layer=args.layer, unit=args.unit, top=args.top)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page.html, encoding="utf-8")
    print(f"{len(page.pieces)} tokens, {page.kind} of layer {page.layer}, unit {page.unit}")
    for feature, units in page.correlations.items():
        print(f"  {feature:<17} " + "  ".join(f"unit {u} r={r:+.2f}" for u, r in units))
    print(f"wrote {out}")
    return 0
