"""``gatedrnn sample RUN``: text from a trained language model, printed as it is generated."""
from __future__ import annotations

import math
import sys


def add_arguments(p):
    from .flags import add_threads_flag

    # the defaults are those of gatedrnn.training.run.Run.sample (a test checks they agree)
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--prompt", default="", help="text the sample continues (default: a new line)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 takes the most likely token (default 0.8)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens only (0: all)")
    p.add_argument("--seed", type=int, help="for a repeatable sample")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--device", default="cpu")
    add_threads_flag(p)
    p.add_argument("--allow-unverified", action="store_true",
                   help="load a checkpoint that carries no SHA-256 digest (only one you trust)")
    p.add_argument("--skip-memory-check", action="store_true",
                   help="build the model even if it looks larger than the memory available")


def run(args) -> int:
    from . import UsageError
    from .flags import use_threads
    from ..training.run import load

    if not math.isfinite(args.temperature):
        raise UsageError(f"--temperature must be a finite number (0 for the most likely token), got {args.temperature}")
    if args.length < 0 or args.temperature < 0 or args.top_k < 0:
        raise UsageError(f"--length, --temperature and --top-k must not be negative, got "
                         f"{args.length}, {args.temperature:g}, {args.top_k}")
    use_threads(args)
    trained = load(args.run, args.checkpoint, args.device, allow_unverified=args.allow_unverified,
                   check_memory=not args.skip_memory_check)
    # the same text as Run.sample, printed as it comes (a prompt outside the vocabulary fails first)
    for text in trained.stream(args.prompt, args.length, args.temperature, args.top_k, args.seed):
        sys.stdout.write(text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
