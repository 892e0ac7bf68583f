"""Dropout chosen from the passes over the text: the rule, when it applies, and that a run's model
really gets the rate (under a step budget at once, under a time budget once timed) and keeps it."""
import json

import pytest
import torch

from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.training import TrainConfig, Trainer, load_checkpoint
from gatedrnn.training import autodropout as A

from .lm_helpers import MODEL, TEXT, TRAIN, corpus_file, one_thread  # noqa: F401


def test_the_rate_is_zero_up_to_the_free_passes_then_grows_by_doubling_up_to_its_cap():
    assert A.dropout_for(0.0) == A.dropout_for(A.FREE_PASSES) == 0.0
    assert A.dropout_for(2 * A.FREE_PASSES) == pytest.approx(A.PER_DOUBLING)
    assert A.dropout_for(4 * A.FREE_PASSES) == pytest.approx(2 * A.PER_DOUBLING)
    assert A.dropout_for(1e9) == A.MAX_DROPOUT
    rates = [A.dropout_for(p) for p in (1, 2.5, 3, 5, 8, 13, 21, 34, 55)]
    assert rates == sorted(rates) and len(set(rates)) > 4


def _text(pieces, repeat):
    """Token ids: ``pieces`` random 64 KB pieces of 100 symbols, the sequence of them ``repeat`` times."""
    g = torch.Generator().manual_seed(0)
    one = torch.randint(0, 100, (pieces * A.PIECE_BYTES,), generator=g)
    return one.repeat(repeat)


def test_novelty_is_near_one_for_a_text_of_new_pages_and_low_for_one_that_repeats_them():
    assert A.novelty(_text(6, 1)) > 0.95  # random pages: nothing far away helps
    assert A.novelty(_text(2, 3)) < 0.45  # the same two pages three times
    assert A.novelty(_text(1, 1)) == A.novelty(torch.arange(10)) == 1.0  # under two pieces: nothing to compare
    assert A.novelty(torch.randint(0, 70000, (50_000,))) > 0.9  # ids past 16 bits are compressed as such


def test_a_text_that_repeats_itself_gets_less_dropout_down_to_none():
    low, high = A.REPEATS
    full = A.dropout_for(10.0)
    assert full > 0 and A.dropout_for(10.0, high) == A.dropout_for(10.0, 1.0) == full
    assert A.dropout_for(10.0, low) == A.dropout_for(10.0, 0.1) == 0.0
    assert A.dropout_for(10.0, (low + high) / 2) == pytest.approx(full / 2, abs=0.01)
    # and a chooser built for a run reads its text: the same budget, a repeating text gets none
    cfg = TrainConfig(steps=100_000, **TRAIN)  # about 18 passes over 4 pieces
    options = {"dropout": None, "cell_options": {}}
    new, repeating = _text(4, 1), _text(1, 4)
    assert A.DropoutChooser.for_run(cfg, options, new).rate > 0
    assert A.DropoutChooser.for_run(cfg, options, repeating).rate == 0.0


@pytest.mark.parametrize("name", A.REGULARISERS)
def test_any_regulariser_given_leaves_the_rate_to_the_user(name):
    cfg = TrainConfig(steps=100, **TRAIN)
    options = {"dropout": None, "cell_options": {}}
    if name == "embedding_dropout":
        options[name] = 0.1
    else:
        options["cell_options"][name] = 0.1
    text = torch.zeros(1000, dtype=torch.long)
    assert A.DropoutChooser.for_run(cfg, options, text) is None
    assert A.DropoutChooser.for_run(cfg, {"dropout": None, "cell_options": {}}, text) is not None
    assert A.DropoutChooser.for_run(cfg, {"dropout": 0.0, "cell_options": {}}, text) is None  # 0 is a choice


def test_a_step_budget_decides_before_the_first_step():
    cfg = TrainConfig(steps=1000, **TRAIN)
    tokens = 1000 * cfg.batch_size * cfg.seq_len
    chooser = A.DropoutChooser(cfg, train_tokens=tokens // 10)
    assert chooser.passes == pytest.approx(10.0) and chooser.rate == A.dropout_for(10.0) > 0
    assert chooser.on_step(A.TIMED[1], 0, 1.0) is None  # nothing left to decide


def test_a_time_budget_decides_from_the_timed_steps_speed():
    now = [100.0]
    cfg = TrainConfig(minutes=10, **TRAIN)
    per_step = cfg.batch_size * cfg.seq_len
    chooser = A.DropoutChooser(cfg, train_tokens=per_step * 100, clock=lambda: now[0])
    assert chooser.rate is None
    for step in range(1, A.TIMED[1]):
        now[0] += 0.5 if step > A.TIMED[0] else 5.0  # the probe's slow steps before the timed ones are not counted
        assert chooser.on_step(step, step * per_step, now[0] - 100.0) is None
    now[0] += 0.5
    elapsed = now[0] - 100.0
    rate = chooser.on_step(A.TIMED[1], A.TIMED[1] * per_step, elapsed)
    expected = (A.TIMED[1] + (600 - elapsed) / 0.5) / 100  # steps in all / steps per pass
    assert chooser.passes == pytest.approx(expected) and rate == A.dropout_for(expected) > 0


def test_a_skipped_step_at_the_timing_start_does_not_stop_the_choice():
    now = [0.0]
    cfg = TrainConfig(minutes=10, **TRAIN)
    per_step = cfg.batch_size * cfg.seq_len
    chooser = A.DropoutChooser(cfg, train_tokens=per_step * 100, clock=lambda: now[0])
    steps = [s for s in range(1, A.TIMED[1] + 1) if s != A.TIMED[0]]  # the step timing starts at skipped
    rates = []
    for step in steps:
        now[0] += 0.5
        rates.append(chooser.on_step(step, step * per_step, now[0]))
    assert rates[:-1] == [None] * (len(steps) - 1) and rates[-1] is not None and chooser.passes > 1


def _run_json(run):
    return json.loads((run / "run.json").read_text())["model"]["dropout"]


def test_a_run_applies_its_rate_records_it_and_a_resume_keeps_it(tmp_path):
    path = corpus_file(tmp_path)
    events = []
    # 2000 steps of 48 tokens over about 13k training tokens: the passes are known at once
    cfg = TrainConfig(data=str(path), steps=2000, **TRAIN)
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run", callback=events.append)
    passes = 2000 * cfg.batch_size * cfg.seq_len / len(trainer.corpus["train"])
    rate = A.dropout_for(passes)
    assert rate > 0 and trainer.model.drop.p == rate and _run_json(tmp_path / "run") == rate
    trainer.run(until=20)
    told = [e.data for e in events if e.kind == "dropout"]
    assert told == [{"dropout": rate, "passes": pytest.approx(passes), "novelty": 1.0}]
    assert load_checkpoint(tmp_path / "run" / "latest.pt")["model_config"]["dropout"] == rate
    again = Trainer.resume(tmp_path / "run")
    assert again.model.drop.p == rate and again.dropout_chooser is None


def test_a_time_budget_run_sets_the_rate_at_the_timed_step(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text(TEXT[:600])  # short enough that the steps below read it several times
    events = []
    # a clock budget far away and a step cap: the timed decision, capped by the steps, is exact
    cfg = TrainConfig(data=str(path), steps=A.TIMED[1] + 5, minutes=60, **TRAIN)
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run", callback=events.append)
    assert trainer.model.drop.p == 0.0 and _run_json(tmp_path / "run") is None
    trainer.run()
    passes = cfg.steps * cfg.batch_size * cfg.seq_len / len(trainer.corpus["train"])
    chosen = [e for e in events if e.kind == "dropout"]
    assert [e.step for e in chosen] == [A.TIMED[1]] and chosen[0].data["passes"] == pytest.approx(passes)
    assert trainer.model.drop.p == A.dropout_for(passes) == _run_json(tmp_path / "run") > 0


def test_a_rate_given_or_another_regulariser_is_left_alone(tmp_path):
    path = corpus_file(tmp_path)
    cfg = TrainConfig(data=str(path), steps=400, **TRAIN)
    given = Trainer.new(cfg, {**MODEL, "dropout": 0.05}, tmp_path / "a")
    other = Trainer.new(cfg, {**MODEL, "cell_options": {"zoneout": 0.1}}, tmp_path / "b")
    assert given.model.drop.p == 0.05 and other.model.drop.p == 0.0
    assert given.dropout_chooser is None and other.dropout_chooser is None


@pytest.mark.parametrize("layers,summed", [(1, False), (2, False), (2, True)])
def test_set_dropout_reaches_every_place_dropout_acts(layers, summed):
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=11, hidden_size=8, num_layers=layers, sum_layer_outputs=summed))
    tokens = torch.randint(0, 11, (5, 3))
    model.train()
    plain = model(tokens)[0]
    assert torch.equal(plain, model(tokens)[0])  # no dropout: deterministic in training mode
    model.set_dropout(0.5)
    assert model.config.dropout == 0.5 and model.drop.p == 0.5
    between = model.rnn.p_between_plain if summed else model.rnn.dropout
    assert between == (0.5 if layers > 1 else 0.0)
    assert not torch.equal(plain, model(tokens)[0])
    model.eval()
    assert torch.allclose(plain, model(tokens)[0])
