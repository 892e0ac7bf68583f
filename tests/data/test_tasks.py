"""Synthetic tasks: shapes, seeding, targets that follow the definitions, and chance baselines."""
import numpy as np
import pytest
import torch

from gatedrnn.data.tasks import REBER_SYMBOLS, TASKS, make_task


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", list(TASKS))
def test_shapes_and_seeding(name):
    task = make_task(name, seq_len=12)
    a, b = task.sample(5, rng(3)), task.sample(5, rng(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert a.x.dim() == 3 and a.x.shape[1] == 5 and a.x.shape[2] == task.input_size
    out = torch.zeros(a.x.shape[0], 5, task.output_size) if task.readout == "all" else torch.zeros(5, task.output_size)
    assert torch.isfinite(task.loss(out, a))
    assert isinstance(task.metric(out, a), float)
    assert not torch.equal(task.sample(5, rng(4)).x, a.x)


def test_unknown_task_and_option_fail_with_the_expected_names():
    with pytest.raises(ValueError, match="unknown task 'adingg'.*did you mean 'adding'"):
        make_task("adingg")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['colours'\]"):
        make_task("copy", colours=3)
    with pytest.raises(ValueError, match="seq_len >= 2, got 1"):
        make_task("adding", seq_len=1)


def test_adding_target_is_the_sum_of_the_two_marked_values_one_per_half():
    task = make_task("adding", seq_len=20)
    batch = task.sample(64, rng())
    values, marks = batch.x[..., 0], batch.x[..., 1]  # (T, B)
    assert torch.equal(marks.sum(0), torch.full((64,), 2.0))
    assert torch.equal(marks[:10].sum(0), torch.ones(64))  # one marker in each half
    torch.testing.assert_close((values * marks).sum(0), batch.y[:, 0], rtol=0, atol=1e-6)


def test_adding_chance_is_the_mse_of_predicting_the_mean():
    task = make_task("adding", seq_len=10)
    batch = task.sample(20000, rng())
    mse = task.metric(torch.ones(20000, 1), batch)
    assert abs(mse - task.chance) < 0.005  # 4 standard errors of the estimate at this size
    assert task.is_solved(0.04) and not task.is_solved(task.chance)


def test_copy_recalls_the_first_symbols_after_the_lag():
    task = make_task("copy", seq_len=7, symbols=4, length=3)
    batch = task.sample(8, rng())
    T = 2 * 3 + 7
    assert batch.x.shape == (T, 8, 6)
    symbols = batch.x[:3].argmax(-1)  # (3, B)
    assert torch.equal(batch.y[-3:], symbols) and torch.equal(batch.y[:-3], torch.zeros(T - 3, 8, dtype=torch.long))
    assert torch.equal(batch.x[3 + 7 - 1].argmax(-1), torch.full((8,), 5))  # the delimiter
    perfect = torch.nn.functional.one_hot(batch.y, 6).float() * 10
    assert task.metric(perfect, batch) == 1.0
    assert task.is_solved(1.0) and task.chance == 0.25


def test_reber_strings_follow_the_embedded_grammar():
    task = make_task("reber", seq_len=12)
    batch = task.sample(50, rng())
    n = batch.mask.sum(0).long()  # inputs per string: its length minus the final E
    for b in range(50):
        string = "".join(REBER_SYMBOLS[i] for i in batch.x[: n[b], b].argmax(-1))
        # inputs are all but the final E: B T|P B ... E T|P
        assert string[0] == "B" and string[2] == "B" and string[-2] == "E" and string[1] in "TP"
        assert string[-1] == string[1]
        # the symbol after the inner E is the second one: the long-range dependency
        assert REBER_SYMBOLS[int(batch.y[n[b] - 2, b].argmax())] == string[1]
        legal = batch.y[: n[b], b]
        assert (legal[torch.arange(n[b] - 1), batch.x[1 : n[b], b].argmax(-1)] == 1).all()  # every next symbol legal
    perfect = (batch.y * 2 - 1) * 10
    assert task.metric(perfect, batch) == 1.0


def test_reber_seq_len_lengthens_the_strings():
    short = make_task("reber", seq_len=10).sample(400, rng()).mask.sum(0).float().mean()
    long = make_task("reber", seq_len=40).sample(400, rng()).mask.sum(0).float().mean()
    assert long > 2 * short


def test_regression_target_is_the_input_lag_steps_earlier():
    task = make_task("regression", seq_len=4, window=3)
    batch = task.sample(6, rng())
    assert batch.x.shape == (7, 6, 1)
    torch.testing.assert_close(batch.y[4:], batch.x[:3], rtol=0, atol=0)
    assert task.metric(batch.y, batch) == 0.0
    assert abs(task.metric(torch.zeros_like(batch.y), batch) - task.chance) < 0.25  # 18 samples: loose
