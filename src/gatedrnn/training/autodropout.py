"""Dropout chosen from how many times a run will read its training text.

A character model that reads its text two or three times is still learning it; one that reads it
twenty times learns it by heart, and its loss on new text rises while its validation loss (pages
of the same text) still falls. Measured (benchmarks/RESULTS.md, "The first hour: dropout from
the passes over the text"): at fixed steps on the default model, at 2.5 passes over rust-book
dropout 0.1 took 1.7% off the held-out loss, and at 5.6 passes over python-docs 0.2 did better
than 0.3; on the clock with the earlier 256-wide model, at 19 passes (10 minutes) 0.2 took off
8.4%. So a run that sets no regulariser of its own gets

    passes  = the tokens its budget will train on / the tokens of its training split
    dropout = PER_DOUBLING * log2(passes / FREE_PASSES), within [0, MAX_DROPOUT]

    chooser = DropoutChooser.for_run(train_cfg, model_options, train_tokens)   # None: set by the user
    chooser.rate                      # known at once under --steps alone, else None until timed
    chooser.on_step(step, tokens, elapsed)   # under --minutes: the rate once the run has timed itself

A text that repeats itself at a distance is the exception: a folder of licence files, logs. Its
held-out pages repeat its training pages, so what the model learns by heart is what it will be
asked, and dropout costs: on `licences` (benchmarks/first_hour.py's text) at 3.2 passes dropout
0.14 gave a held-out loss 22% higher than none. How much a text repeats itself at a distance is
measured by compressing it (``novelty``: LZMA's size of the whole over the sum of its 64 KB pieces'
sizes, each compressed alone; 0.49 for `licences`, 0.79-0.89 for documentation, prose and code); the
rate is scaled down linearly from full at ``REPEATS[1]`` to none at ``REPEATS[0]``.

With ``--steps`` the budget's tokens are known before the first step, and the run stays
reproducible. With ``--minutes`` they are estimated from the run's own speed over its first steps
(``TIMED``, after the thread probe of ``threads.py``), and the rate is set then; the steps before it
train without dropout.
"""
from __future__ import annotations

import lzma
import math
import time

from ..models.lm import MODULE_OPTIONS

#: passes over the text that need no dropout, the rate added per doubling beyond them, its cap
FREE_PASSES = 1.25
PER_DOUBLING = 0.1
MAX_DROPOUT = 0.3
#: under a time budget, the steps (counted from the run's start or resume) whose time gives the speed
TIMED = (15, 45)
#: novelty (see ``novelty``) at or below which a text gets no dropout, and from which it gets the full rate
REPEATS = (0.5, 0.7)
#: the pieces ``novelty`` compresses alone, and how much of the text it reads (its start)
PIECE_BYTES, SAMPLE_BYTES = 1 << 16, 1 << 21
#: model settings and cell options that regularise: any of them given, the chooser stays out
REGULARISERS = ("embedding_dropout",) + tuple(MODULE_OPTIONS)


def dropout_for(passes: float, novelty: float = 1.0) -> float:
    """The dropout rate for a run that reads its training text ``passes`` times (rounded to 0.01),
    scaled down for a text that repeats itself (``novelty`` under ``REPEATS[1]``)."""
    if not passes > FREE_PASSES:
        return 0.0
    scale = min(1.0, max(0.0, (novelty - REPEATS[0]) / (REPEATS[1] - REPEATS[0])))
    return round(scale * min(MAX_DROPOUT, PER_DOUBLING * math.log2(passes / FREE_PASSES)), 2)


def novelty(ids) -> float:
    """How new a text's far parts are to each other, from 0 to about 1: the LZMA-compressed size of
    (the first ``SAMPLE_BYTES`` of) its token ids over the sum of the sizes of its ``PIECE_BYTES``
    pieces compressed alone. A text whose pages share little but style compresses little better
    whole (about 0.8-0.9); one that repeats whole pages far apart compresses much better whole.
    A text of fewer than two pieces is 1.0 (nothing at a distance to measure)."""
    ids = ids.numpy() if hasattr(ids, "numpy") else ids
    top = int(ids.max()) if len(ids) else 0
    width = "u1" if top < 1 << 8 else "<u2" if top < 1 << 16 else "<u4"
    data = ids.astype(width).tobytes()[:SAMPLE_BYTES]
    if len(data) < 2 * PIECE_BYTES:
        return 1.0

    def size(b):
        return len(lzma.compress(b, preset=1))

    return size(data) / sum(size(data[i:i + PIECE_BYTES]) for i in range(0, len(data), PIECE_BYTES))


def passes_by_steps(steps: int, tokens_per_step: int, train_tokens: int) -> float:
    return steps * tokens_per_step / max(1, train_tokens)


class DropoutChooser:
    """Chooses the dropout rate of a run whose model left it unset (``dropout=None``)."""

    def __init__(self, cfg, train_tokens: int, start_step: int = 0, clock=time.monotonic, novelty: float = 1.0):
        self.cfg, self.train_tokens, self.clock, self.novelty = cfg, int(train_tokens), clock, novelty
        self.tokens_per_step = cfg.batch_size * cfg.seq_len
        self.start_step = start_step
        self.t0, self.t0_done = None, 0  # the clock at the first timed step, and the steps done then
        self.passes = None
        self.rate = None
        if cfg.steps and not cfg.minutes:
            self._decide(passes_by_steps(cfg.steps, self.tokens_per_step, self.train_tokens))
        elif not cfg.steps and not cfg.minutes:
            self._decide(0.0)  # no budget: how long it runs is not known, no dropout is added

    @classmethod
    def for_run(cls, cfg, model_options: dict, train, start_step: int = 0) -> "DropoutChooser | None":
        """A chooser for a run on the token ids ``train`` (its training split) when the model
        options leave ``dropout`` unset (``None``) and set no other regulariser; else None (the
        user's choice stands; an unset rate is then 0)."""
        if model_options.get("dropout") is not None:
            return None
        options = {**model_options, **(model_options.get("cell_options") or {})}
        if any(options.get(name) for name in REGULARISERS):
            return None
        return cls(cfg, len(train), start_step, novelty=novelty(train))

    def _decide(self, passes: float) -> float:
        self.passes, self.rate = passes, dropout_for(passes, self.novelty)
        return self.rate

    def on_step(self, step: int, tokens: int, elapsed: float) -> float | None:
        """Called after each step (``step`` done, ``tokens`` trained in all, ``elapsed`` seconds of
        the run): the rate, once, when the timed steps are done; else None."""
        if self.rate is not None:
            return None
        done = step - self.start_step
        if done >= TIMED[0] and self.t0 is None:  # (>=: a skipped step reports no event)
            self.t0, self.t0_done = self.clock(), done
            return None
        if done < TIMED[1] or self.t0 is None:
            return None
        seconds = max(self.clock() - self.t0, 1e-9)
        per_s = (done - self.t0_done) * self.tokens_per_step / seconds
        expected = tokens + per_s * max(0.0, self.cfg.minutes * 60 - elapsed)
        if self.cfg.steps:
            expected = min(expected, self.cfg.steps * self.tokens_per_step)
        return self._decide(expected / max(1, self.train_tokens))
