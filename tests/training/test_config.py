"""TrainConfig: settings whose default follows from another setting, and that each reaches what
it sets."""
import pytest

from gatedrnn.training import TrainConfig, Trainer
from gatedrnn.training.config import ADAMW_WEIGHT_DECAY

from .lm_helpers import MODEL, TRAIN, corpus_file, one_thread  # noqa: F401


@pytest.mark.parametrize("optimizer,given,expected", [
    ("adamw", None, ADAMW_WEIGHT_DECAY),  # decoupled: the measured default
    ("sgd", None, 0.0),                   # coupled (an L2 term): none unless asked
    ("adamw", 0.0, 0.0),                  # a value given is kept, whatever it is
    ("sgd", 1e-4, 1e-4),
])
def test_weight_decay_follows_the_optimizer_and_reaches_it(tmp_path, optimizer, given, expected):
    unless_given = {} if given is None else {"weight_decay": given}  # None: the field's own default
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), steps=1, optimizer=optimizer, **unless_given, **TRAIN)
    assert cfg.weight_decay == expected
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run")
    assert [group["weight_decay"] for group in trainer.optimizer.param_groups] == [expected]
    assert type(trainer.optimizer).__name__.lower() == optimizer


def test_a_negative_weight_decay_is_refused():
    with pytest.raises(ValueError, match="weight_decay must not be negative"):
        TrainConfig(weight_decay=-0.1)
