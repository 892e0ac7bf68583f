"""The run's clock: where the learning-rate schedule is, when the budget is spent, and when to
validate.

A run's budget is its ``steps`` or, without them, its ``minutes``; the schedule (warm-up, then
cosine or constant) follows that budget. Validations come every ``eval_every`` steps; under a time
budget, one is put off to a later multiple of ``eval_every`` while the training done since the
last one took less than that validation's own time over ``eval_share`` (``validation_due``): on a
large text a validation costs seconds, and at 250 steps apart they took about a tenth of a
10-minute budget (benchmarks/RESULTS.md, "The first hour on a 5 MB text"). A step budget keeps
them every ``eval_every`` steps, so that such a run stays reproducible.
"""
from __future__ import annotations

import math

from .config import TrainConfig


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then constant or cosine down to ``min_lr_ratio``."""
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    if cfg.schedule == "constant":
        return warm
    p = min(max(progress, 0.0), 1.0)
    return warm * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def schedule_progress(cfg: TrainConfig, step: int, elapsed: float, anchor: dict | None = None) -> float:
    """Where the schedule is, 0 at the start and 1 at the end of the budget (steps, else minutes).

    ``anchor`` (``{"by", "at", "progress"}``) is set when a resumed run's budget changed: from the
    step (or second) ``at`` where it was resumed, the schedule goes on from ``progress`` and reaches
    1 at the new end, so the learning rate carries on where the run left it instead of jumping.
    """
    if cfg.steps:
        by, x, end = "steps", step, cfg.steps
    elif cfg.minutes:
        by, x, end = "minutes", elapsed, cfg.minutes * 60
    else:
        return 0.0
    if anchor and anchor["by"] == by and end > anchor["at"]:
        return anchor["progress"] + (1 - anchor["progress"]) * (x - anchor["at"]) / (end - anchor["at"])
    return x / end


def schedule_end(cfg: TrainConfig):
    """What the schedule runs to: the step budget if there is one, else the time budget."""
    return ("steps", cfg.steps) if cfg.steps else ("minutes", cfg.minutes) if cfg.minutes else None


def budget_reached(cfg: TrainConfig, step: int, elapsed: float) -> str | None:
    """``"steps"`` or ``"minutes"`` when the run has used its budget, else None."""
    if cfg.steps and step >= cfg.steps:
        return "steps"
    if cfg.minutes and elapsed >= cfg.minutes * 60:
        return "minutes"
    return None


def validation_due(cfg: TrainConfig, step: int, trained_s: float, last_eval_s: float) -> bool:
    """Whether to validate after ``step``: at every multiple of ``eval_every``, and under a time
    budget only once the training done since the last validation (``trained_s`` seconds) is at
    least ``last_eval_s`` (what the last one took; 0 before the first) over ``eval_share``."""
    if step % cfg.eval_every:
        return False
    if not cfg.minutes or cfg.steps or not cfg.eval_share:
        return True
    return trained_s * cfg.eval_share >= last_eval_s
