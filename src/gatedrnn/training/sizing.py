"""Whether a model fits: its parameter count and a step's memory, known before anything is allocated.

    count_parameters(LMConfig(vocab_size=100, hidden_size=10**7))   # 400,000,xxx,xxx: from the spec
    check_fits(config, torch.device("cpu"), train_cfg)             # SizeError if it cannot fit

A size typed with one zero too many (``--hidden-size 10000000``, ``--num-layers 100000000``) would
otherwise allocate until the machine runs out of memory, layer by layer, or fail after seconds
with a message about bytes. The count comes from each cell's parameter spec (the one the engines
build from), one layer of each input size: it costs nothing whatever the sizes.
"""
from __future__ import annotations

import os

import torch

from ..cells import make_cell
from ..models.lm import MODULE_OPTIONS, LMConfig
from .checkpoint import CheckpointError


FLOAT_BYTES = 4


class SizeError(ValueError):
    """A model that cannot fit in the memory available: one line for the user."""


def _layer_parameters(cell, input_size: int, hidden_size: int) -> int:
    total = 0
    for spec in cell.param_spec(input_size, hidden_size):
        n = 1
        for d in spec.shape:
            n *= int(d)
        total += n
    return total


def count_parameters(cfg: LMConfig) -> int:
    """The number of parameters of ``LanguageModel(cfg)`` (shared tied weights counted once)."""
    cell = make_cell(cfg.cell, **{k: v for k, v in cfg.cell_options.items() if k not in MODULE_OPTIONS})
    first = _layer_parameters(cell, cfg.input_size, cfg.hidden_size)
    later = _layer_parameters(cell, cfg.output_size, cfg.hidden_size) if cfg.num_layers > 1 else 0
    embedding = cfg.vocab_size * cfg.input_size
    decoder = cfg.vocab_size + (0 if cfg.tie_weights else cfg.vocab_size * cfg.output_size)
    return embedding + first + (cfg.num_layers - 1) * later + decoder


def step_bytes(cfg: LMConfig, train=None, rows: int | None = None) -> int:
    """About how much memory one training step needs (``train`` given) or the model alone (None):
    weights, gradients and optimizer state, plus what the forward keeps for the backward per
    token (embedding, each layer's gates and states, the logits and their gradient). An estimate
    on the low side: the real peak is higher, never lower by much."""
    params = count_parameters(cfg)
    if train is None:
        return params * FLOAT_BYTES
    per_param = 1 + 1 + (2 if train.optimizer == "adamw" else (1 if train.momentum else 0))
    cell = make_cell(cfg.cell, **{k: v for k, v in cfg.cell_options.items() if k not in MODULE_OPTIONS})
    gates = int(getattr(cell, "num_gates", 1) or 1)
    tokens = train.seq_len * (rows if rows is not None else train.batch_size)
    per_token = cfg.input_size + cfg.num_layers * (gates + 4) * cfg.hidden_size + 3 * cfg.vocab_size
    return (per_param * params + tokens * per_token) * FLOAT_BYTES


def available_bytes(device) -> int | None:
    """Memory this process may still take on ``device``; None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # no driver answer: no check
            return None
    if device.type != "cpu":
        return None
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError):
        pass
    try:  # a container's limit (cgroup v2)
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit != "max":
            with open("/sys/fs/cgroup/memory.current") as f:
                found.append(max(0, int(limit) - int(f.read().strip())))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (OSError, ValueError):
            pass
    return min(found) if found else None


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1024 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EB"


def describe(cfg: LMConfig) -> str:
    embed = f", embedding {cfg.embed_size:,}" if cfg.embed_size else ""
    return (f"{cfg.cell} with hidden size {cfg.hidden_size:,} x {cfg.num_layers:,} layer(s){embed} and a vocabulary "
            f"of {cfg.vocab_size:,}")


def check_fits(cfg: LMConfig, device, train=None, rows: int | None = None) -> None:
    """``SizeError`` if the model (and, with ``train``, one training step) needs more memory than
    ``device`` has available; nothing is allocated. Skipped where the free memory is unknown."""
    need = step_bytes(cfg, train, rows)
    free = available_bytes(device)
    if free is None or need <= free:
        return
    what = "one training step needs" if train is not None else "its weights need"
    raise SizeError(f"the model does not fit in memory: {describe(cfg)} has {count_parameters(cfg):,} parameters, "
                    f"{what} about {human(need)}, and {torch.device(device).type} has {human(free)} available. "
                    f"Choose smaller sizes, or add --skip-memory-check to try anyway.")


def check_weights_fit_config(cfg: LMConfig, weights, path) -> None:
    """A checkpoint's config must not ask for (much) more than its weights hold: refused before
    the model is built, so a config edited to ``hidden_size=10**7`` allocates nothing."""
    if not isinstance(weights, dict):
        raise CheckpointError(f"checkpoint {path} holds no model weights (expected a dict of tensors, found "
                              f"{type(weights).__name__})")
    held = sum(t.numel() for t in weights.values() if torch.is_tensor(t))
    expected = count_parameters(cfg)
    # a margin: the count is exact for every cell's spec, but a future module may keep a buffer
    # more or less; what matters is never building a model many times the size of the file
    if expected > 2 * held + 1_000_000:
        raise CheckpointError(f"checkpoint {path} does not fit its own model config: the config describes "
                              f"{describe(cfg)} ({expected:,} parameters), but its weights hold {held:,} values; "
                              f"it was refused before building the model.")
