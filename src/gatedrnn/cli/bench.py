"""``gatedrnn bench``: training-step, forward, generation and memory cost of each engine against
torch.nn's recurrent kernels, timed interleaved round by round (see ``gatedrnn.experiments.bench``)."""
from __future__ import annotations

import csv
import json
import sys

from ..experiments.bench import CPU_ENGINES, DTYPES, ENGINES, GPU_ENGINES, BenchConfig, format_table, machine_info, run_bench
from ..cells import CELLS

KINDS = ("train", "forward", "generate", "memory")


def _list(text):
    return tuple(v for v in text.replace(",", " ").split() if v)


def add_arguments(p):
    p.add_argument("--cells", type=_list, default=tuple(CELLS), help=f"comma-separated (default: {','.join(CELLS)})")
    p.add_argument("--sizes", type=_list, default=("256", "512", "1024"), help="hidden sizes, input size equal (default: 256,512,1024)")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds per measurement (default: 5)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES))
    p.add_argument("--engines", type=_list, default=None,
                   help=f"comma-separated among {','.join(ENGINES)} (default: {','.join(CPU_ENGINES)}, "
                        f"and {','.join(GPU_ENGINES)} on a CUDA device)")
    p.add_argument("--tf32", action="store_true",
                   help="TF32 float32 products on a CUDA device, for cuDNN and cuBLAS alike (default: off for both)")
    p.add_argument("--kinds", type=_list, default=KINDS, help=f"comma-separated among {','.join(KINDS)}")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--rounds", type=int, default=None, help="Mogrifier rounds (default: the cell's, 5)")
    p.add_argument("--autocast", choices=("bfloat16", "float16"), default=None,
                   help="time the calls under torch.autocast of this dtype (weights stay --dtype)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for every gatedrnn module measured, e.g. layer_norm=true, zoneout=0.1 "
                        "(repeatable; torch.nn's modules take none)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", metavar="PATH", help="write rows and machine info as JSON ('-': stdout)")
    out.add_argument("--csv", metavar="PATH", help="write rows as CSV ('-': stdout)")


def _option(text, error):
    """``KEY=VALUE`` with VALUE read as JSON where it parses (numbers, true/false), else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise error(f"--option takes KEY=VALUE, got {text!r}")
    from .flags import CELL_OPTIONS, PARSERS

    key = key.strip()
    kind = CELL_OPTIONS.get(key, (None,))[0]
    if kind in PARSERS:  # drop_gates=i,o
        return key, PARSERS[kind](value)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def run(args) -> int:
    from . import UsageError

    try:
        sizes = tuple(int(s) for s in args.sizes)
    except ValueError:
        raise UsageError(f"--sizes takes integers, got {','.join(args.sizes)}") from None
    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    cell_options = {"mogrifier": {"rounds": args.rounds}} if args.rounds is not None else {}
    module_options = dict(_option(text, UsageError) for text in args.option)
    cfg = BenchConfig(autocast=args.autocast, module_options=module_options, cells=args.cells, sizes=sizes, seq_len=args.seq_len, batch_size=args.batch_size,
                      repeats=args.repeats, device=args.device, dtype=args.dtype, engines=args.engines,
                      kinds=args.kinds, cell_options=cell_options, tf32=args.tf32)
    cfg.validate()
    info = machine_info()
    to_stdout = args.json == "-" or args.csv == "-"
    log = sys.stderr if to_stdout else sys.stdout
    print(f"# {info['cpu']}, {info['cores']} cores, torch {info['torch']}, {info['date']}; "
          f"T={cfg.seq_len} B={cfg.batch_size} {cfg.dtype}"
          f"{' autocast ' + cfg.autocast if cfg.autocast else ''} {cfg.device}"
          f"{(' TF32 ' + ('on' if cfg.tf32 else 'off') + ' for cuDNN and cuBLAS') if cfg.device.startswith('cuda') else ''}"
          f"{' ' + json.dumps(cfg.module_options) if cfg.module_options else ''}, {cfg.repeats} interleaved rounds",
          file=log, flush=True)
    rows = run_bench(cfg, progress=lambda r: print(
        f"  {r['kind']:<8} {r['cell']:<10} {r['size']:>5} {r['engine']:<10} " + " ".join(
            f"{k}={v:.3f}" for k, v in r.items() if isinstance(v, float)), file=log, flush=True))
    print(format_table(rows), file=log)
    if args.json:
        text = json.dumps({"machine": info, "config": vars_of(cfg), "rows": rows}, indent=1)
        _write(args.json, text)
    elif args.csv:
        keys = sorted({k for r in rows for k in r})
        target = sys.stdout if args.csv == "-" else open(args.csv, "w", newline="")
        try:
            w = csv.DictWriter(target, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        finally:
            if target is not sys.stdout:
                target.close()
    return 0


def vars_of(cfg):
    from dataclasses import asdict

    return asdict(cfg)


def _write(path, text):
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")
