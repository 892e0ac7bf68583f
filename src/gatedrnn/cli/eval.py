"""``gatedrnn eval RUN``: loss (nats per token), perplexity and bits per token of a trained model."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def add_arguments(p):
    from .flags import add_threads_flag

    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("--data", metavar="PATH", help="a text file (evaluated whole) or a corpus folder "
                   "(default: the run's corpus)")
    p.add_argument("--split", choices=("valid", "test"), default="test", help="of a corpus (default test)")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--streams", type=int, default=1, help="contiguous streams run side by side (1: exact, default)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens per forward call; the state is carried")
    p.add_argument("--device", default="cpu")
    add_threads_flag(p)
    p.add_argument("--json", action="store_true", help="one JSON object (strict JSON: a non-finite loss is null, "
                   "with a field saying why)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="load a checkpoint that carries no SHA-256 digest (only one you trust)")
    p.add_argument("--skip-memory-check", action="store_true",
                   help="build the model even if it looks larger than the memory available")


def run(args) -> int:
    from . import UsageError
    from .flags import use_threads
    from ..data import encode_file, load_corpus
    from ..data.corpora import saved_split
    from ..training.run import load

    if args.streams <= 0 or args.seq_len <= 0:
        raise UsageError(f"--streams and --seq-len must be positive, got {args.streams} and {args.seq_len}")
    use_threads(args)
    trained = load(args.run, args.checkpoint, args.device, allow_unverified=args.allow_unverified,
                   check_memory=not args.skip_memory_check)
    vocab, train = trained.vocab, trained.config.train.to_dict()
    if args.data and Path(args.data).is_file():
        tokens, what = encode_file(args.data, vocab), f"{args.data} (whole file)"
    else:
        source = args.data or train.get("data") or None
        split = saved_split(trained.corpus) if not args.data else {}  # the run's own split
        corpus = load_corpus(source, vocab.level, vocab=vocab, **split)
        tokens, what = corpus[args.split], f"{corpus.description.get('name')} {args.split} split"
        saved = trained.corpus
        if not args.data and saved.get("sha256") and saved["sha256"] != corpus.description.get("sha256"):
            print(f"note: this Python's built-in corpus (Python {corpus.description.get('python')}) differs from "
                  f"the one the run trained on (Python {saved.get('python')})", file=sys.stderr)
    if len(tokens) < 2:
        raise UsageError(f"{what} has {len(tokens)} token(s); evaluation needs at least 2")
    result = trained.score_tokens(tokens, seq_len=args.seq_len, streams=args.streams)  # what Run.score gives
    unk = result["unknown_tokens"]
    out = {**result, "step": trained.step, "data": what, "level": vocab.level}
    if args.json:
        print(json.dumps(strict_json(out), allow_nan=False))
    else:
        print(f"{what}: loss {out['loss']:.4f} nats/token | ppl {out['ppl']:.3f} | "
              f"{out['bits_per_token']:.4f} bits/token | {out['tokens']:,} tokens | step {out['step']}"
              + (f" | {unk:,} <unk>" if unk else ""))
    return 0


def strict_json(result: dict) -> dict:
    """JSON has no Infinity or NaN (strict parsers refuse them, jq reads 1.797e308): a non-finite
    figure is written as null, and ``non_finite`` names each one with its value."""
    out, bad = {}, {}
    for key, value in result.items():
        if isinstance(value, float) and not math.isfinite(value):
            out[key], bad[key] = None, repr(value)
        else:
            out[key] = value
    if bad:
        out["non_finite"] = bad  # e.g. {"loss": "inf", "ppl": "inf"}: the model gives some token probability 0
    return out
