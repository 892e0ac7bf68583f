"""``gatedrnn export RUN model.onnx``: a trained language model as an ONNX graph for onnxruntime."""
from __future__ import annotations


def add_arguments(p):
    p.add_argument("run", metavar="RUN", help="run folder (or a checkpoint file)")
    p.add_argument("out", metavar="OUT", help="the .onnx file to write")
    p.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    p.add_argument("--allow-unverified", action="store_true",
                   help="load a checkpoint that carries no SHA-256 digest (only one you trust)")
    p.add_argument("--seq-len", type=int, default=1,
                   help="tokens per stream per call (default 1: a generation step; the state is fed back). "
                        "A plain torch.nn configuration takes any length")
    p.add_argument("--dynamo", action="store_true", help="the torch.export-based exporter (slower) instead of TorchScript's")


def run(args) -> int:
    import importlib.util

    from . import UsageError

    # torch.onnx.export needs onnx; its torch.export-based exporter (--dynamo) needs onnxscript too
    needed = ["onnx", "onnxscript"] if args.dynamo else ["onnx"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"exporting{' with --dynamo' if args.dynamo else ''} needs {' and '.join(missing)}: "
                         f"pip install {' '.join(needed)} (and onnxruntime to run the graph; gatedrnn's dev extra "
                         f"has them all)")
    from ..training import load_model
    from ..experiments.export import export_lm, io_names

    if args.seq_len <= 0:
        raise UsageError(f"--seq-len must be positive, got {args.seq_len}")
    model, vocab, _ = load_model(args.run, args.checkpoint, allow_unverified=args.allow_unverified)
    export_lm(model, args.out, seq_len=args.seq_len, dynamo=args.dynamo, vocab=vocab)
    inputs, outputs = io_names(model)
    print(f"wrote {args.out}: inputs {', '.join(inputs)}; outputs {', '.join(outputs)} "
          f"(vocabulary of {len(vocab)} in the metadata as gatedrnn.vocab)")
    return 0
