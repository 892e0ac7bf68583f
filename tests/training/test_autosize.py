"""The default model's width from the time budget: when the rule applies, that a run's model really
gets the width, and that a width given (by a flag, a recipe or Python) always wins."""
from dataclasses import fields

import pytest

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
    got = S.sized_for_budget(cfg, {"cell": "gru"})
    assert got == ({"cell": "gru", "hidden_size": S.WIDE_HIDDEN} if wide else {"cell": "gru"})
    assert S.sized_for_budget(cfg, {"hidden_size": None})["hidden_size"] == (S.WIDE_HIDDEN if wide else None)
    assert S.chosen_width(cfg, {}) == (S.WIDE_HIDDEN if wide else None)


@pytest.mark.parametrize("given", [DEFAULT, 64, S.WIDE_HIDDEN * 2])
def test_a_width_given_wins_whatever_its_value(given):
    cfg = TrainConfig(minutes=S.WIDE_MINUTES)
    assert S.sized_for_budget(cfg, {"hidden_size": given})["hidden_size"] == given
    assert S.chosen_width(cfg, {"hidden_size": given}) is None


def test_the_wide_model_is_wider_than_the_default_and_the_help_says_when():
    assert S.WIDE_HIDDEN > DEFAULT
    text = next(f for f in fields(LMConfig) if f.name == "hidden_size").metadata["default_text"]
    assert f"{DEFAULT}; {S.WIDE_HIDDEN} " in text and f"{S.WIDE_MINUTES:g} minutes or more" in text


@pytest.mark.parametrize("minutes, want", [(S.WIDE_MINUTES, S.WIDE_HIDDEN), (S.WIDE_MINUTES / 2, DEFAULT)])
def test_a_new_run_builds_its_model_at_the_chosen_width(minutes, want, tmp_path):
    options = {k: v for k, v in MODEL.items() if k != "hidden_size"}
    trainer = Trainer.new(TrainConfig(data=str(corpus_file(tmp_path)), minutes=minutes, **TRAIN), options,
                          tmp_path / "run")
    assert trainer.model.config.hidden_size == want
    assert trainer.model.rnn.hidden_size == want
    trainer.lock.release()
