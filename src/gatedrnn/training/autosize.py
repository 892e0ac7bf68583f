"""The default model's width chosen from the run's time budget.

The default model (``LMConfig``: one LSTM layer of 384, embedding 128) was sized for short runs,
where a wider model's slower steps cost more than its capacity gains. A longer budget reads the
text many times, and the trade turns. Measured on the clock (benchmarks/RESULTS.md, "A wider model
for a longer budget"): at 5 and 10 minutes a layer of 512 ended 0.5-3.8% lower on held-out text
than 384 on two texts and level (+0.3%) on a third; at 2 minutes it had done worse. That was the
default cell, the LSTM, on characters; another cell's step costs differently (a Mogrifier's products
alone cost 1.7 times an LSTM's step, so fewer steps fit a budget), and a word-level model's output layer grows with
its vocabulary, so the rule is for what was measured: a run of an LSTM (``WIDE_CELLS``) at
character or byte level (``WIDE_LEVELS``: the same vocabulary sizes and step costs) that sets no
width of its own gets

    hidden_size = WIDE_HIDDEN   under a time budget (``--minutes``) of WIDE_MINUTES or more
                  LMConfig's default otherwise (a step budget alone keeps it: its runs stay what
                  the steps say, whatever the machine)

    options = sized_for_budget(train_cfg, model_options, level)   # the width filled in
"""
from __future__ import annotations

from dataclasses import fields

from ..models.lm import LMConfig

#: the time budget (minutes) from which the default model is wider, and its width there
WIDE_MINUTES, WIDE_HIDDEN = 5.0, 512
#: the cells and token levels the rule was measured on (others keep ``LMConfig``'s default)
WIDE_CELLS, WIDE_LEVELS = ("lstm",), ("char", "byte")


def wide_for(cfg) -> bool:
    """Whether ``cfg``'s budget gets the wider default model."""
    return bool(cfg.minutes) and cfg.minutes >= WIDE_MINUTES


def chosen_width(cfg, model_options: dict, level: str) -> int | None:
    """The width this rule chooses for a run of ``cfg`` on a corpus at ``level`` whose
    ``model_options`` (``LMConfig`` fields) leave ``hidden_size`` unset (absent or ``None``);
    ``None`` where it chooses nothing (a width given is kept, whatever its value; a shorter budget,
    another cell or the word level keeps ``LMConfig``'s default)."""
    if model_options.get("hidden_size") is not None or not wide_for(cfg):
        return None
    cell = model_options.get("cell") or next(f.default for f in fields(LMConfig) if f.name == "cell")
    if cell not in WIDE_CELLS or level not in WIDE_LEVELS:
        return None
    return WIDE_HIDDEN


def sized_for_budget(cfg, model_options: dict, level: str) -> dict:
    """``model_options`` with the width ``chosen_width`` chooses filled in, where it chooses one."""
    width = chosen_width(cfg, model_options, level)
    return model_options if width is None else {**model_options, "hidden_size": width}
