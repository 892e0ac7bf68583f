"""Speed and memory of the engines against PyTorch's own recurrent kernels, measured side by side.

    rows = run_bench(BenchConfig(cells=("lstm", "gru"), sizes=(256, 512)))

Timings on shared machines drift by tens of percent within minutes, so every variant of one
(cell, size) is timed in the same round, round after round, and each ratio is the median of the
per-round ratios, not a ratio of medians. Absolute times are only comparable within one run.

On a CUDA device every call is followed by ``torch.cuda.synchronize`` inside the timing; the
engines measured add ``triton`` (the GPU engine) and ``compile`` (``torch.compile`` of the
autograd loop's module), and ``tf32`` sets TF32 for cuDNN and cuBLAS alike (off by default for
both; torch's own defaults differ), so a ratio to cuDNN compares like with like. Each sequence
row also has ``first_call_s``: its first call, compiling, capturing and allocating included.

Rows (dicts), one per measurement, ``kind`` telling which:

- ``train``: a training step, forward and backward with input gradients on, one layer
  ``(T, B, I=H)``; ``forward``: the same forward without gradients. Per engine: ``ms`` (median),
  ``vs_torch`` (against ``torch.nn.LSTM``/``GRU``/``RNN`` of the same size: for every LSTM variant
  ``torch.nn.LSTM`` is the yardstick) and ``vs_autograd`` (against the autograd loop, ``engine="autograd"``).
- ``products`` (an engine of the ``train`` and ``forward`` rows): only the matrix products the
  fused engine runs for that step, as it runs them (``floor.products_only``): a floor under the
  fused engine on these kernels, so ``fused / products`` is what the rest of its work costs and
  ``autograd / products`` bounds how much faster than the autograd loop any engine built on
  these products can be. ``chained`` (named only): the same products, each per-step product
  reading what the thread has just written from the product before it, as in a recurrence;
  ``vs_chained`` is the ratio to it.
- ``generate``: per-token latency of a 2-layer model stepped one token at a time with batch 1
  (the module's ``step``), against two ``torch.nn.LSTMCell``/``GRUCell``/``RNNCell`` stepped the
  same way, no gradients; ``weights_mib`` and ``weights_vs_torch``: the bytes of weights each
  token reads, which bound the latency from below where they do not fit in the caches.
- ``memory``: the peak memory of one training step, two ways: ``peak_mib``, the rise of the
  process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over its
  resident set just before a second step, each engine in a fresh subprocess with glibc returning
  large blocks to the system (the gradient buffers of the first step are freed before, so they
  count); and ``saved_mib``, the bytes of the distinct tensors autograd saves for the backward
  (``saved_tensors_hooks``).
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from ..cells import CELLS
from .floor import products_only

#: the torch.nn module each cell is measured against
YARDSTICK = {"lstm": "LSTM", "peephole": "LSTM", "cifg": "LSTM", "mogrifier": "LSTM", "gru": "GRU", "rnn": "RNN",
             "slstm": "LSTM", "mingru": "GRU", "minlstm": "LSTM", "indrnn": "RNN"}
STEP_CELL = {"LSTM": "LSTMCell", "GRU": "GRUCell", "RNN": "RNNCell"}
#: engines a user can name; ``torch`` is the yardstick, ``auto`` only differs from ``fused``
#: for the plain lstm/gru/rnn that engine="auto" hands to torch's kernels; ``products`` is the
#: fused engine's matrix products alone (``train`` and ``forward`` rows only)
CPU_ENGINES = ("fused", "autograd", "torch", "auto", "products")
#: ``peer``: another project's implementation of the cell (experiments/peers.py: xlstm's vanilla
#: loop for slstm, minGRU-pytorch for mingru and minlstm), measured only when named
PEER_ENGINES = ("peer",)
#: ``chained``: ``products`` with each per-step product reading what the thread has just written
#: from the product before it (``products_only``'s ``chained``), a floor with the recurrence's
#: dependency; measured only when named
FLOOR_ENGINES = ("chained",)
#: on a GPU also: ``triton`` (Triton kernels, CUDA graphs) and ``compile``, ``torch.compile`` of
#: the autograd loop's module (what a user would otherwise do; its first call compiles)
GPU_ENGINES = ("triton", "compile")
ENGINES = CPU_ENGINES + GPU_ENGINES + PEER_ENGINES + FLOOR_ENGINES
AUTO_CELLS = ("lstm", "gru", "rnn")
DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}


@dataclass
class BenchConfig:
    cells: tuple = tuple(CELLS)
    sizes: tuple = (256, 512, 1024)
    seq_len: int = 64
    batch_size: int = 32
    repeats: int = 5
    device: str = "cpu"
    dtype: str = "float32"
    engines: tuple | None = None  # None: CPU_ENGINES, and GPU_ENGINES on a CUDA device
    kinds: tuple = ("train", "forward", "generate", "memory")
    gen_tokens: int = 32  # tokens per generation round
    cell_options: dict = field(default_factory=dict)  # cell name -> options (mogrifier rounds, ...)
    #: options given to every gatedrnn module measured (layer_norm, zoneout, ...); torch.nn takes none
    module_options: dict = field(default_factory=dict)
    #: None, or the dtype of ``torch.autocast`` around the timed calls ("bfloat16", "float16")
    autocast: str | None = None
    #: TF32 for float32 products on a CUDA device, set alike for cuDNN and cuBLAS (torch's defaults
    #: differ: cuDNN on, matmul off), so both sides of a ratio run the same policy
    tf32: bool = False

    def validate(self):
        from ..training.distributed import resolve_device

        self.device = str(resolve_device(self.device))  # a ValueError for one this process lacks
        cuda = self.device.startswith("cuda")
        if self.engines is None:
            self.engines = CPU_ENGINES + (GPU_ENGINES if cuda else ())
        for name in self.cells:
            if name not in CELLS:
                raise ValueError(f"unknown cell {name!r}: expected some of {', '.join(CELLS)}")
        bad = [e for e in self.engines if e not in ENGINES]
        if bad:
            raise ValueError(f"unknown engine(s) {bad}: expected some of {', '.join(ENGINES)}")
        if "triton" in self.engines and not cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise ValueError(f"engine triton runs on a CUDA device; got --device {self.device}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.autocast not in (None, "bfloat16", "float16"):
            raise ValueError(f"autocast must be bfloat16 or float16, got {self.autocast!r}")
        for key in ("seq_len", "batch_size", "repeats", "gen_tokens"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if any(s <= 0 for s in self.sizes):
            raise ValueError(f"sizes must be positive, got {self.sizes}")
        bad = [k for k in self.kinds if k not in ("train", "forward", "generate", "memory")]
        if bad:
            raise ValueError(f"unknown kind(s) {bad}: expected some of train, forward, generate, memory")


# -- the variants: small creators in a registry ---------------------------------------------
def make_module(engine: str, cell: str, size: int, cfg: BenchConfig, num_layers: int = 1):
    """The module measured for ``engine``: a gatedrnn module, or the torch.nn yardstick."""
    factory = {"device": cfg.device, "dtype": DTYPES[cfg.dtype]}
    if engine == "torch":
        return getattr(torch.nn, YARDSTICK[cell])(size, size, num_layers, **factory)
    if engine == "peer":
        from .peers import make_peer

        return make_peer(cell, size, {**cfg.module_options, **cfg.cell_options.get(cell, {})}, **factory)
    if engine == "compile":
        return torch.compile(make_module("autograd", cell, size, cfg, num_layers))
    from ..torch_engine import layer

    return layer(cell, size, size, num_layers=num_layers, engine=engine, **factory,
                 **{**cfg.module_options, **cfg.cell_options.get(cell, {})})


def engines_for(cell: str, cfg: BenchConfig, products: bool = False) -> list:
    """The engines measured for ``cell``: ``auto`` for the cells it hands to torch.nn's kernels,
    ``products`` where asked for (the sequence rows)."""
    from .peers import PEER_CELLS

    return [e for e in cfg.engines if (e != "auto" or cell in AUTO_CELLS)
            and (e not in ("products", "chained") or products) and (e != "peer" or cell in PEER_CELLS)]


def interleaved(fns: dict, repeats: int, warmup: int = 1, sync=None, clock=time.perf_counter) -> dict:
    """Seconds per call of each function, timed in turn within each round: name -> list.
    ``sync`` (``torch.cuda.synchronize`` on a GPU) waits for the device after each call. ``clock``
    is wall time; ``time.process_time`` (the process's own CPU time, which other processes on a
    shared machine disturb far less) suits one thread only, since idle threads' spinning counts."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync()
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            start = clock()
            fns[name]()
            sync()
            times[name].append(clock() - start)
    return times


def device_sync(cfg):
    """What waits for ``cfg.device`` to finish (``None`` on CPU, where calls return when done)."""
    return torch.cuda.synchronize if cfg.device.startswith("cuda") else None


@contextlib.contextmanager
def tf32_policy(cfg):
    """cuDNN's and cuBLAS's TF32 switches both set to ``cfg.tf32`` for the run, then restored."""
    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    try:
        for f in flags:
            f.allow_tf32 = cfg.tf32
        yield
    finally:
        for f, b in zip(flags, before):
            f.allow_tf32 = b


def ratio(times: dict, a: str, b: str):
    """Median over rounds of ``time(a) / time(b)``; ``None`` when either is missing."""
    if a not in times or b not in times:
        return None
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def autocast_context(cfg):
    """``torch.autocast`` as the config asks, or a context that does nothing."""
    if cfg.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(cfg.device).type, dtype=getattr(torch, cfg.autocast))


def _train_fn(module, x, gy, cfg):
    def step():
        module.zero_grad(set_to_none=True)
        x.grad = None
        with autocast_context(cfg):
            y, _ = module(x)
        y.backward(gy.to(y.dtype))
    return step


def _forward_fn(module, x, cfg):
    def forward():
        with torch.no_grad(), autocast_context(cfg):
            module(x)
    return forward


def _inputs(cfg, size, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = DTYPES[cfg.dtype]
    shape = (cfg.seq_len, cfg.batch_size, size)
    x = torch.randn(shape, generator=gen).to(cfg.device, dtype).requires_grad_()
    gy = torch.randn(shape, generator=gen).to(cfg.device, dtype)
    return x, gy


def bench_sequence(cell: str, size: int, cfg: BenchConfig) -> list:
    """``train`` and ``forward`` rows for one cell and size."""
    torch.manual_seed(0)
    engines = engines_for(cell, cfg, products=True)
    modules = {e: make_module("fused" if e in ("products", "chained") else e, cell, size, cfg) for e in engines}
    x, gy = _inputs(cfg, size)
    rows = []
    for kind in ("train", "forward"):
        if kind not in cfg.kinds:
            continue
        fns = {e: (products_only(m, x, backward=kind == "train", chained=e == "chained") if e in ("products", "chained") else
                   _train_fn(m, x, gy, cfg) if kind == "train" else _forward_fn(m, x, cfg)) for e, m in modules.items()}
        failed, first = {}, {}
        sync = device_sync(cfg) or (lambda: None)
        for e, fn in list(fns.items()):
            start = time.perf_counter()
            try:  # a kernel may refuse a configuration (torch.nn.LSTM under CPU bf16 autocast without AVX-512)
                fn()
                sync()
            except (RuntimeError, ValueError) as err:  # ValueError: engine="triton" refusing a configuration
                failed[e] = str(err).splitlines()[0]
                del fns[e]
            first[e] = time.perf_counter() - start  # with compiling, capturing, allocating
        times = interleaved(fns, cfg.repeats, sync=device_sync(cfg))
        for e in engines:
            row = {"kind": kind, "cell": cell, "size": size, "engine": e, "first_call_s": first.get(e),
                   "ms": 1e3 * statistics.median(times[e]) if e in times else None,
                   "vs_torch": ratio(times, e, "torch"), "vs_autograd": ratio(times, e, "autograd"),
                   "vs_products": ratio(times, e, "products"), "vs_chained": ratio(times, e, "chained")}
            if e in failed:
                row["error"] = failed[e]
            rows.append(row)
    return rows


def bench_generation(cell: str, size: int, cfg: BenchConfig) -> list:
    """``generate`` rows: per-token latency of a 2-layer model, batch 1, one token at a time."""
    torch.manual_seed(0)
    dtype = DTYPES[cfg.dtype]
    factory = {"device": cfg.device, "dtype": dtype}
    model = make_module("fused", cell, size, cfg, num_layers=2)
    has_c = model.cell.has_cell_state
    cell_cls = getattr(torch.nn, STEP_CELL[YARDSTICK[cell]])
    cells = [cell_cls(size, size, **factory) for _ in range(2)]
    tokens = torch.randn(cfg.gen_tokens, 1, size, generator=torch.Generator().manual_seed(0)).to(cfg.device, dtype)
    step = getattr(model, "step", None)

    def ours():
        with torch.no_grad():
            state = None
            for t in range(cfg.gen_tokens):
                if step is not None:
                    _, state = step(tokens[t], state)
                else:  # a module without step: a length-1 sequence per token
                    _, state = model(tokens[t : t + 1], state)

    def theirs():
        with torch.no_grad():
            states = [None, None]
            for t in range(cfg.gen_tokens):
                inp = tokens[t]
                for k, c in enumerate(cells):
                    states[k] = c(inp, states[k])
                    inp = states[k][0] if isinstance(states[k], tuple) else states[k]

    times = interleaved({"fused": ours, "torch": theirs}, cfg.repeats, sync=device_sync(cfg))
    via = "step" if step is not None else "forward on length-1 inputs"
    # at batch 1 a step reads every weight once and does little else with it: the weights' bytes
    # set the pace where they do not stay in the caches
    weights = {"fused": _mib(model.parameters()), "torch": _mib(p for c in cells for p in c.parameters())}
    rows = []
    for e in ("fused", "torch"):
        rows.append({"kind": "generate", "cell": cell, "size": size, "engine": e,
                     "ms": 1e3 * statistics.median(times[e]) / cfg.gen_tokens,
                     "vs_torch": ratio(times, e, "torch"), "via": via if e == "fused" else STEP_CELL[YARDSTICK[cell]],
                     "weights_mib": weights[e], "weights_vs_torch": weights[e] / weights["torch"],
                     "layers": 2, "batch": 1, "has_cell_state": has_c})
    return rows


def _mib(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def saved_bytes(module, x, gy) -> int:
    """Bytes of the distinct tensors autograd saves for the backward of one forward."""
    seen = {}

    def pack(t):
        try:
            key = (t.untyped_storage().data_ptr(), t.device.type)
            seen[key] = max(seen.get(key, 0), t.untyped_storage().nbytes())
        except (RuntimeError, NotImplementedError):  # an opaque (e.g. oneDNN) tensor
            seen[("opaque", id(t))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _ = module(x)
    y.backward(gy)
    return sum(seen.values())


def _peak_in_subprocess(engine, cell, size, cfg) -> float | None:
    """MiB: the rise of the resident set's peak over its level before one training step, in a
    fresh interpreter (see ``_peak_child``); ``None`` where that cannot be measured."""
    spec = json.dumps({"engine": engine, "cell": cell, "size": size, "cfg": asdict(cfg)})
    code = "import sys, json; from gatedrnn.experiments.bench import _peak_child; print(json.dumps(_peak_child(sys.argv[1])))"
    # a fixed mmap threshold: glibc then hands every large tensor back to the system when freed,
    # so a step's peak shows in the resident set instead of hiding in memory kept from before
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    try:
        out = subprocess.run([sys.executable, "-c", code, spec], capture_output=True, text=True, timeout=600, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return None


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"no {key} in /proc/self/status")


def _peak_child(spec: str) -> float | None:
    import ctypes
    import gc

    s = json.loads(spec)
    cfg = BenchConfig(**{**s["cfg"], "cells": tuple(s["cfg"]["cells"]), "sizes": tuple(s["cfg"]["sizes"])})
    torch.manual_seed(0)
    module = make_module(s["engine"], s["cell"], s["size"], cfg)
    x, gy = _inputs(cfg, s["size"])
    step = _train_fn(module, x, gy, cfg)
    step()  # one-time set-up (kernels, thread pools, gradient buffers) out of the measured step
    module.zero_grad(set_to_none=True)
    x.grad = None
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak resident set (VmHWM), Linux >= 4.0
        before = _status_kib("VmRSS")
        step()
        return max(_status_kib("VmHWM") - before, 0) / 1024
    except OSError:
        return None


def bench_memory(cell: str, size: int, cfg: BenchConfig) -> list:
    rows = []
    per = {}
    for e in engines_for(cell, cfg):
        torch.manual_seed(0)
        module = make_module(e, cell, size, cfg)
        x, gy = _inputs(cfg, size)
        saved = saved_bytes(module, x, gy) / 2**20
        peak = _peak_in_subprocess(e, cell, size, cfg) if cfg.device == "cpu" and sys.platform == "linux" else None
        per[e] = (saved, peak)
    for e, (saved, peak) in per.items():
        base_saved, base_peak = per.get("torch", (None, None))
        rows.append({"kind": "memory", "cell": cell, "size": size, "engine": e, "saved_mib": saved, "peak_mib": peak,
                     "saved_vs_torch": saved / base_saved if base_saved else None,
                     "peak_vs_torch": peak / base_peak if peak is not None and base_peak else None})
    return rows


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = [fl for fl in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if fl in line.split()]
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "flags": flags,
            "torch": torch.__version__, "onednn": torch.backends.mkldnn.is_available(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def script_args(parser, argv=None):
    """A benchmark script's arguments, with ``--threads`` (torch's thread count, set here) and
    ``--json`` (where ``write_rows`` puts the rows) added to ``parser``'s own."""
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def write_rows(path, rows: list, **extra) -> None:
    """A benchmark script's rows as JSON at ``path``, with the machine they were measured on."""
    with open(path, "w") as f:
        json.dump({"machine": machine_info(), **extra, "rows": rows}, f, indent=1)


def run_bench(cfg: BenchConfig, progress=None) -> list:
    """Every requested row, cell by cell and size by size; ``progress(row)`` sees each as it comes."""
    cfg.validate()
    with tf32_policy(cfg):
        return _run_bench(cfg, progress)


def _run_bench(cfg: BenchConfig, progress=None) -> list:
    rows = []
    for size in cfg.sizes:
        for cell in cfg.cells:
            parts = []
            if "train" in cfg.kinds or "forward" in cfg.kinds:
                parts.append(bench_sequence)
            if "generate" in cfg.kinds:
                parts.append(bench_generation)
            if "memory" in cfg.kinds:
                parts.append(bench_memory)
            for part in parts:
                for row in part(cell, size, cfg):
                    row.update(seq_len=cfg.seq_len, batch_size=cfg.batch_size, dtype=cfg.dtype, device=cfg.device, tf32=cfg.tf32,
                               autocast=cfg.autocast or "", options=json.dumps(cfg.module_options, sort_keys=True))
                    rows.append(row)
                    if progress:
                        progress(row)
    return rows


def format_table(rows: list) -> str:
    """The rows as aligned text, one block per kind."""
    out = []
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    seq_cols = ("ms", "vs_torch", "vs_autograd", "vs_products", "vs_chained")
    for kind, cols in (("train", seq_cols), ("forward", seq_cols),
                       ("generate", ("ms", "vs_torch", "weights_mib", "weights_vs_torch")),
                       ("memory", ("saved_mib", "saved_vs_torch", "peak_mib", "peak_vs_torch"))):
        sel = [r for r in rows if r["kind"] == kind]
        if not sel:
            continue
        out.append(f"{kind}:")
        out.append(f"  {'cell':<10} {'size':>5} {'engine':<10} " + " ".join(f"{c:>14}" for c in cols))
        for r in sel:
            vals = " ".join(f"{fmt(r.get(c), '.3f' if 'vs' in c else '.2f'):>14}" for c in cols)
            out.append(f"  {r['cell']:<10} {r['size']:>5} {r['engine']:<10} {vals}")
    return "\n".join(out)
