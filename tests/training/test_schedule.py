"""The run's clock: the learning-rate schedule, and when a run validates (every ``eval_every``
steps; under a time budget, fewer where a validation would take more than ``eval_share`` of it)."""
import pytest

from gatedrnn.training import TrainConfig, Trainer
from gatedrnn.training.config import TrainConfig as TC
from gatedrnn.training.schedule import lr_factor, validation_due

from .lm_helpers import MODEL, TRAIN, corpus_file, one_thread  # noqa: F401


def test_schedule_warms_up_then_follows_a_cosine_to_its_floor():
    cfg = TC(warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 0.0) == pytest.approx(1.0)
    assert lr_factor(cfg, 50, 0.5) == pytest.approx(0.55)
    assert lr_factor(cfg, 100, 1.0) == pytest.approx(0.1)
    assert lr_factor(TC(warmup=0, schedule="constant"), 100, 0.9) == 1.0


@pytest.mark.parametrize("budget", [{"steps": 100}, {"steps": 100, "minutes": 10.0}, {"minutes": 10.0, "eval_share": 0.0}])
def test_a_step_budget_or_no_share_validates_at_every_multiple_whatever_it_costs(budget):
    cfg = TC(eval_every=25, **budget)
    assert [s for s in range(1, 101) if validation_due(cfg, s, trained_s=0.0, last_eval_s=1e9)] == [25, 50, 75, 100]


def test_under_a_time_budget_a_validation_waits_until_the_training_since_the_last_paid_for_it():
    cfg = TC(minutes=10.0, eval_every=25, eval_share=0.05)
    assert not validation_due(cfg, 24, trained_s=1e9, last_eval_s=0.0)  # never between multiples
    assert validation_due(cfg, 25, trained_s=0.0, last_eval_s=0.0)  # the first: its cost is not known yet
    assert not validation_due(cfg, 50, trained_s=19.9, last_eval_s=1.0)  # 1 s of validation needs 20 s of training
    assert validation_due(cfg, 50, trained_s=20.0, last_eval_s=1.0)


@pytest.mark.parametrize("share, validations", [(0.03, [1, 12]), (0.0, list(range(1, 13)))])
def test_a_timed_run_puts_off_validations_that_cost_more_than_its_share(share, validations, tmp_path, monkeypatch):
    """Each validation is made to report 1000 s: with a share, the run validates at the first
    multiple (its cost unknown) and at the end only; without one, at every multiple."""
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), minutes=1e5, **{**TRAIN, "eval_every": 1, "eval_share": share})
    events = []
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run", callback=events.append)
    validate = trainer.validate

    def costly():
        result = validate()
        trainer.last_eval_s = 1000.0
        return result

    monkeypatch.setattr(trainer, "validate", costly)
    assert trainer.run(until=12)["reason"] == "paused"
    assert [e.step for e in events if e.kind == "valid"] == validations


def test_the_share_is_checked():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="eval_share must be in"):
            TC(eval_share=bad)
