"""Compiles the Triton kernels of the GPU engine for a GPU, on a machine without one.

    python tests/torch_engine/triton_compile.py [quick|sample|all] [ARCH ...]   # ARCH: 90 (H100), 80, ...

Triton compiles to a cubin without a device (its ptxas ships in the wheel), so every launch the
engine's loops make can be checked against the Triton compiler's rules, which the interpreter
(tests/torch_engine/test_triton.py) does not apply: it runs the kernels as NumPy. The launches
are recorded, not run: the loops run on CPU tensors with ``launch`` replaced by a recorder (they
never read a kernel's output on the host, so nothing else changes), for each declared case and
mask, in float32, float64 and with bfloat16 products (autocast); each distinct kernel signature
is then compiled. Run in a process without ``TRITON_INTERPRET`` (the kernels must be
``JITFunction``s). Exit status 0 when everything compiled; prints what did not.
"""
from __future__ import annotations

import os
import sys

os.environ.pop("TRITON_INTERPRET", None)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from gatedrnn.cells import CELLS, make_cell  # noqa: E402
from gatedrnn.torch_engine import triton as engine  # noqa: E402
from gatedrnn.torch_engine.triton import function, loops, mogrifier  # noqa: E402

T, B, I, H = 3, 2, 4, 5
DTYPES = {torch.float32: "fp32", torch.float64: "fp64", torch.bfloat16: "bf16", torch.float16: "fp16"}


F32, F64, BF16 = (torch.float32, torch.float32), (torch.float64, torch.float64), (torch.float32, torch.bfloat16)
#: configurations that together set every compile-time flag
PICKS = [("peephole", {}), ("peephole", {"layer_norm": True}), ("cifg", {}), ("gru", {"layer_norm": True}),
         ("rnn", {"layer_norm": True}), ("lstm", {"drop_gates": ("i", "f", "o"), "input_activation": "identity",
         "output_activation": "identity"}), ("gru", {}), ("rnn", {}), ("rnn", {"nonlinearity": "relu"}),
         ("mogrifier", {"rounds": 1}), ("mogrifier", {"rounds": 2})]


def cases(which):
    """``(cell, keep kinds, state dropout, (state dtype, product dtype) pairs)``: every declared case
    with every mask in float32, float64 and with bfloat16 products (``all``); the configurations
    that together set every compile-time flag, with all masks and none, in the same dtypes
    (``sample``); or those in float32, and bfloat16 products without masks (``quick``)."""
    if which in ("sample", "quick"):
        out = []
        for n, o in PICKS:
            cell = make_cell(n, **o)
            on = (True,) * len(cell.state_sizes(H))
            out.append((cell, on, True, (F32,) if which == "quick" else (F32, F64, BF16)))
            out.append((cell, (False,) * len(on), False, (F32, BF16) if which == "quick" else (F32, F64, BF16)))
        return out
    out = []
    for name, options in engine.HANDLES.items():
        configs = [{}] + [{k: v} for k, h in options.items() for v in h.values if v != CELLS[name].options[k]]
        for cfg in configs:
            try:
                cell = make_cell(name, **cfg)
            except ValueError:
                continue
            n = len(cell.state_sizes(H))
            for keep in {(False,) * n, (True,) * n, (True,) + (False,) * (n - 1)}:
                for mask in (False, True):
                    out.append((cell, keep, mask, (F32, F64, BF16)))
    return out


def record(cell, keep_on, mask, dtype, product_dtype):
    """The ``(kernel, args, constexprs)`` of every launch of one forward and backward."""
    seen = []

    def recorder(kernel, n, *args, **consts):
        grid, block = loops.grid_for(n)
        seen.append((kernel, args, {**consts, "BLOCK": block}))

    gen = torch.Generator().manual_seed(0)
    params = {s.name: torch.rand(s.shape, generator=gen, dtype=torch.float64).to(dtype) for s in cell.param_spec(I, H)}
    if mask:
        params["mask_hh"] = torch.ones(B, params["weight_hh"].shape[1], dtype=dtype)
    x = torch.rand(T, B, I, generator=gen, dtype=torch.float64).to(dtype)
    state = tuple(torch.zeros(B, n, dtype=dtype) for n in cell.state_sizes(H))
    keep = tuple(torch.full((T, B, n), 0.5, dtype=dtype) if on else None for on, n in zip(keep_on, cell.state_sizes(H)))
    plan = loops.Plan(cell, keep_h=keep[0] is not None, keep_c=len(keep) > 1 and keep[1] is not None, mask=mask,
                      product_dtype=product_dtype)
    forward, backward, _ = function.LOOPS[function.family(cell)]
    def row_recorder(kernel, rows, width, *args, **consts):
        seen.append((kernel, args, {**consts, "BLOCK": triton.next_power_of_2(width)}))

    saved_launch = loops.launch, mogrifier.launch, loops.launch_rows
    loops.launch = mogrifier.launch = recorder
    loops.launch_rows = row_recorder
    try:
        y, state_n, saved = forward(plan, params, x, state, keep if any(keep_on) else None)
        backward(plan, params, x, saved, torch.ones_like(y), tuple(torch.ones_like(s) for s in state_n))
        backward(plan, params, x, saved, None, (None,) * len(state))
    finally:
        loops.launch, mogrifier.launch, loops.launch_rows = saved_launch
    return seen


def signature(kernel, args, consts):
    names = kernel.arg_names
    sig, constexprs = {}, {}
    for name, a in zip(names, args):
        sig[name] = f"*{DTYPES[a.dtype]}" if torch.is_tensor(a) else "i32"
    for name in names[len(args):]:
        sig[name] = "constexpr"
        constexprs[(names.index(name),)] = consts[name]
    return sig, constexprs


def main(argv):
    which = argv[0] if argv else "sample"
    archs = [int(a) for a in argv[1:]] or [90]
    todo = {}
    for cell, keep_on, mask, dtypes in cases(which):
        for dtype, pdt in dtypes:
            for kernel, args, consts in record(cell, keep_on, mask, dtype, pdt):
                sig, constexprs = signature(kernel, args, consts)
                key = (kernel.fn.__name__, tuple(sig.items()), tuple(sorted(constexprs.items())))
                todo.setdefault(key, (kernel, sig, constexprs))
    failed = []
    for arch in archs:
        for key, (kernel, sig, constexprs) in todo.items():
            try:
                triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs), target=GPUTarget("cuda", arch, 32))
            except Exception as err:  # noqa: BLE001 - report every failure, then fail
                failed.append(f"sm_{arch} {key[0]} {dict(key[1])} {dict(key[2])}: {str(err).splitlines()[-1] if str(err) else err!r}")
    print(f"compiled {len(todo) * len(archs) - len(failed)} of {len(todo) * len(archs)} kernel signatures "
          f"for sm_{', sm_'.join(map(str, archs))}")
    for line in failed:
        print("FAILED", line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
