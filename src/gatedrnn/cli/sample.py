"""``gatedrnn sample RUN``: text from a trained language model, printed as it is generated."""
from __future__ import annotations

import sys


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--prompt", default="", help="text the sample continues (default: a new line)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 takes the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens only (0: all)")
    p.add_argument("--seed", type=int, help="for a repeatable sample")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--device", default="cpu")


def run(args) -> int:
    from . import UsageError
    from ..training import generate, load_model

    if args.length < 0 or args.temperature < 0 or args.top_k < 0:
        raise UsageError(f"--length, --temperature and --top-k must not be negative, got "
                         f"{args.length}, {args.temperature:g}, {args.top_k}")
    model, vocab, _ = load_model(args.run, args.checkpoint, args.device)
    stream = generate(model, vocab, args.prompt, args.length, args.temperature, args.top_k, args.seed)
    first = next(stream, "")  # a prompt outside the vocabulary fails before anything is printed
    sys.stdout.write(args.prompt + first)
    for text in stream:
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
