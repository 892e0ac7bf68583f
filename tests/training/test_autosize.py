"""The default model's width from the time budget: when the rule applies (budget, cell, level), that
a run's model really gets the width, and that a width given (by a flag, a recipe or Python) always
wins."""
from dataclasses import fields

import pytest

from gatedrnn.cells import CELLS
from gatedrnn.data import LEVELS
from gatedrnn.models.lm import LMConfig
from gatedrnn.training import TrainConfig, Trainer
from gatedrnn.training import autosize as S
from gatedrnn.training.config import DEFAULT_MINUTES

from .lm_helpers import MODEL, TRAIN, corpus_file, one_thread  # noqa: F401

DEFAULT = next(f.default for f in fields(LMConfig) if f.name == "hidden_size")


@pytest.mark.parametrize("budget, wide", [
    ({"minutes": S.WIDE_MINUTES}, True), ({"minutes": 4 * S.WIDE_MINUTES}, True),
    ({"minutes": S.WIDE_MINUTES, "steps": 10}, True),  # the clock may still be what stops it
    ({"minutes": S.WIDE_MINUTES / 2}, False), ({"steps": 10**6}, False),
    ({}, DEFAULT_MINUTES >= S.WIDE_MINUTES)])  # no budget given: the default run's minutes
def test_a_long_time_budget_gets_the_wider_model_and_nothing_else_does(budget, wide):
    cfg = TrainConfig(**budget)
    assert S.wide_for(cfg) is wide
    got = S.sized_for_budget(cfg, {"cell": "lstm"}, "char")
    assert got == ({"cell": "lstm", "hidden_size": S.WIDE_HIDDEN} if wide else {"cell": "lstm"})
    assert S.sized_for_budget(cfg, {"hidden_size": None}, "char")["hidden_size"] == (S.WIDE_HIDDEN if wide else None)
    assert S.chosen_width(cfg, {}, "char") == (S.WIDE_HIDDEN if wide else None)


DEFAULT_CELL = next(f.default for f in fields(LMConfig) if f.name == "cell")


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("cell", [None, *CELLS])  # None: the cell left to LMConfig's default
def test_the_rule_holds_for_the_cells_and_levels_it_was_measured_on_and_no_others(cell, level):
    cfg = TrainConfig(minutes=S.WIDE_MINUTES)
    options = {} if cell is None else {"cell": cell}
    wide = (cell or DEFAULT_CELL) in S.WIDE_CELLS and level in S.WIDE_LEVELS
    assert S.chosen_width(cfg, options, level) == (S.WIDE_HIDDEN if wide else None)
    assert S.sized_for_budget(cfg, options, level) == ({**options, "hidden_size": S.WIDE_HIDDEN} if wide else options)


def test_the_rule_names_only_cells_and_levels_that_exist():
    assert set(S.WIDE_CELLS) <= set(CELLS) and set(S.WIDE_LEVELS) <= set(LEVELS)
    assert DEFAULT_CELL in S.WIDE_CELLS  # the default model is what it was measured on


@pytest.mark.parametrize("given", [DEFAULT, 64, S.WIDE_HIDDEN * 2])
def test_a_width_given_wins_whatever_its_value(given):
    cfg = TrainConfig(minutes=S.WIDE_MINUTES)
    assert S.sized_for_budget(cfg, {"hidden_size": given}, "char")["hidden_size"] == given
    assert S.chosen_width(cfg, {"hidden_size": given}, "char") is None


def test_the_wide_model_is_wider_than_the_default_and_the_help_says_when():
    assert S.WIDE_HIDDEN > DEFAULT
    text = next(f for f in fields(LMConfig) if f.name == "hidden_size").metadata["default_text"]
    assert f"{DEFAULT}; {S.WIDE_HIDDEN} " in text and f"{S.WIDE_MINUTES:g} minutes or more" in text


@pytest.mark.parametrize("minutes, level, want", [(S.WIDE_MINUTES, "char", S.WIDE_HIDDEN),
                                                  (S.WIDE_MINUTES / 2, "char", DEFAULT),
                                                  (S.WIDE_MINUTES, "word", DEFAULT)])
def test_a_new_run_builds_its_model_at_the_chosen_width(minutes, level, want, tmp_path):
    options = {k: v for k, v in MODEL.items() if k != "hidden_size"}
    trainer = Trainer.new(TrainConfig(data=str(corpus_file(tmp_path)), minutes=minutes, level=level, **TRAIN),
                          options, tmp_path / "run")
    assert trainer.corpus.level == level
    assert trainer.model.config.hidden_size == want
    assert trainer.model.rnn.hidden_size == want
    trainer.lock.release()
