"""Reading a trained run back: the model, its vocabulary and its checkpoint, with the checks that
come before anything is built (the config against the weights, the model against the memory),
and the failures a run folder reports in one line.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from ..data import Vocabulary
from ..models.lm import LanguageModel, LMConfig
from . import distributed as D
from .checkpoint import BEST, LATEST, CheckpointError, load_checkpoint
from .sizing import check_fits, check_weights_fit_config


class RunWriteError(OSError):
    """A write to the run folder failed (a full disk, a read-only mount, no permission); the
    message says what the folder still holds and how to go on: one line for the user."""


class CheckpointFallback(UserWarning):
    """The checkpoint asked for could not be used and another one of the run was."""

    one_line = True  # the CLI prints it as one note


def describe_os_error(err: OSError) -> str:
    what = err.strerror or str(err)
    return f"{what} ({err.filename})" if err.filename else what


def load_model(run, which: str = "best", device="cpu", *, allow_unverified: bool = False, check_memory: bool = True):
    """A trained model, its vocabulary and its checkpoint from a run folder or checkpoint file.

    ``device`` is where the model goes (``"cpu"``, ``"cuda"``, ``"auto"``). Returns ``(model,
    vocab, checkpoint)``: the ``LanguageModel`` in eval mode, its ``Vocabulary`` and the
    checkpoint's payload. ``gatedrnn.load`` wraps the same in a ``Run`` with sampling and scoring.
    ``allow_unverified`` loads a checkpoint without its SHA-256 digest; ``check_memory=False``
    builds a model larger than the memory available.

    ``which`` picks ``best`` or ``latest`` in a folder. If that file is missing or cannot be
    used, the other one is tried, and a ``CheckpointFallback`` warning names it; ``ckpt["path"]``
    is the file used. The config is checked against the weights, and the model against the memory
    available, before it is built.
    """
    device = D.resolve_device(device)
    run = Path(run)
    if not run.exists():
        raise FileNotFoundError(f"no such run folder or checkpoint file: {run}")
    if run.is_dir():
        names = [BEST, LATEST] if which == "best" else [LATEST, BEST]
        paths = [run / n for n in names if (run / n).is_file()]
        if not paths:
            raise FileNotFoundError(f"{run} holds no checkpoint (expected {BEST} or {LATEST})")
    else:
        paths = [run]
    first_error = None
    for path in paths:
        try:
            ckpt = load_checkpoint(path, allow_unverified=allow_unverified)
            model_cfg = LMConfig.from_dict(ckpt["model_config"])
            check_weights_fit_config(model_cfg, ckpt["model"], path)
            break
        except CheckpointError as err:
            if first_error is not None:
                raise CheckpointError(f"{first_error} The other checkpoint cannot be used either: {err}") from None
            first_error = err
    else:
        raise first_error
    if path != paths[0]:
        other = "latest" if path.name == LATEST else "best"
        warnings.warn(CheckpointFallback(f"{first_error} Using {path} (step {ckpt['step']}) instead; "
                                         f"--checkpoint {other} picks it without this note."))
    elif path.name != (BEST if which == "best" else LATEST) and run.is_dir():
        warnings.warn(CheckpointFallback(f"{run} has no {BEST if which == 'best' else LATEST}; using {path} "
                                         f"(step {ckpt['step']})."))
    if check_memory:
        check_fits(model_cfg, device)
    model = LanguageModel(model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit its own model config: {str(err).splitlines()[0]}") from None
    ckpt["path"] = path  # the file it came from (the other one of the folder after a fallback)
    return model.to(device).eval(), Vocabulary.from_dict(ckpt["vocab"]), ckpt
