"""A non-finite loss or gradient: ``gatedrnn train`` stops with one line naming the step and
keeps the last good checkpoint, or under ``--on-nan skip`` spends the step without an update."""
from __future__ import annotations

import csv
import math
import re

import pytest
import torch

from gatedrnn.cli import main
from gatedrnn.training import loop
from gatedrnn.training.checkpoint import load_checkpoint

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 80
TINY = ["--cell", "lstm", "--hidden-size", "8", "--seq-len", "8", "--batch-size", "2", "--device", "cpu",
        "--eval-every", "1000", "--log-every", "1", "--sample-length", "0", "--warmup", "0"]


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "corpus.txt").write_text(TEXT)
    return tmp_path / "corpus.txt"


@pytest.fixture
def nan_at(monkeypatch):
    """Make the training loss NaN at the given (1-based) steps; a test hook, no CLI flag."""
    steps: set = set()
    calls = {"n": 0}
    real = loop.F

    class PoisonedF:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def cross_entropy(*args, **kwargs):
            calls["n"] += 1
            loss = real.cross_entropy(*args, **kwargs)
            return loss * float("nan") if calls["n"] in steps else loss

    monkeypatch.setattr(loop, "F", PoisonedF())
    return steps


def finite_weights(path) -> bool:
    return all(torch.isfinite(t).all() for t in load_checkpoint(path)["model"].values())


def train_rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["split"] == "train"]


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(corpus, tmp_path, nan_at, capsys):
    nan_at.add(7)
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus), *TINY, "--steps", "20", "--save-every", "3", "--out", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "the loss is nan at step 7" in err[0] and str(run) in err[0], err
    ckpt = load_checkpoint(run / "latest.pt")
    assert ckpt["step"] == 6  # the checkpoint of step 6, not overwritten by the failed step
    assert finite_weights(run / "latest.pt")


def test_absurd_learning_rate_stops_before_non_finite_weights_are_saved(corpus, tmp_path, capsys):
    """No hook: SGD at lr 1e38 overflows float32 within a few steps. Saving every step, the
    checkpoint left is the one before the step named, and its weights are finite."""
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus), *TINY, "--steps", "20", "--save-every", "1", "--out", str(run),
                 "--optimizer", "sgd", "--lr", "1e38", "--clip", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    m = re.search(r"the (loss|gradient norm) is (nan|inf|-inf) at step (\d+);", err)
    assert m and len(err.splitlines()) == 1, err
    step = int(m.group(3))
    assert load_checkpoint(run / "latest.pt")["step"] == step - 1
    assert finite_weights(run / "latest.pt")


def test_on_nan_skip_spends_the_step_without_an_update(corpus, tmp_path, nan_at, capsys):
    nan_at.update({3, 4, 9})
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus), *TINY, "--steps", "12", "--save-every", "4", "--out", str(run),
                 "--on-nan", "skip"])
    out = capsys.readouterr().out
    assert code == 0, out
    skipped = [int(s) for s in re.findall(r"step\s+(\d+) \| the loss is nan: step skipped", out)]
    assert skipped == [3, 4, 9]
    assert load_checkpoint(run / "latest.pt")["step"] == 12 and finite_weights(run / "latest.pt")
    rows = train_rows(run)
    assert [int(r["step"]) for r in rows] == [s for s in range(1, 13) if s not in (3, 4, 9)]
    assert all(math.isfinite(float(r["loss"])) for r in rows)


def test_skipped_steps_leave_the_weights_unchanged(corpus, tmp_path, nan_at):
    """Steps 5-8 all skipped: the checkpoint at step 8 holds the weights of step 4."""
    nan_at.update({5, 6, 7, 8})
    run = tmp_path / "run"
    # a constant schedule: the two runs' first four steps use the same learning rates
    args = ["train", "--data", str(corpus), *TINY, "--save-every", "4", "--out", str(run), "--on-nan", "skip",
            "--schedule", "constant"]
    assert main([*args, "--steps", "8"]) == 0
    at8 = load_checkpoint(run / "latest.pt")
    nan_at.clear()
    run4 = tmp_path / "run4"
    assert main(["train", "--data", str(corpus), *TINY, "--save-every", "4", "--out", str(run4), "--steps", "4",
                 "--schedule", "constant"]) == 0
    at4 = load_checkpoint(run4 / "latest.pt")
    assert at8["step"] == 8 and at4["step"] == 4
    for name, value in at4["model"].items():
        assert torch.equal(at8["model"][name], value), name


def test_too_many_skips_in_a_row_stop(corpus, tmp_path, nan_at, capsys):
    nan_at.update(range(2, 200))
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus), *TINY, "--steps", "100", "--save-every", "5", "--out", str(run),
                 "--on-nan", "skip"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{loop.MAX_SKIPS_IN_A_ROW} steps skipped in a row" in err, err
    assert finite_weights(run / "latest.pt")


def test_weights_that_overflow_on_the_last_step_are_never_saved(corpus, tmp_path, capsys, monkeypatch):
    """The loss and gradient of the last step are finite, but its update is not: no later loss
    would show it, so the save itself refuses, and the checkpoint before it stays."""
    real_step = torch.optim.AdamW.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        out = real_step(self, *args, **kwargs)
        if calls["n"] == 6:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus), *TINY, "--steps", "6", "--save-every", "4", "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "the weights are not finite after step 6" in err and len(err.splitlines()) == 1, err
    assert load_checkpoint(run / "latest.pt")["step"] == 4 and finite_weights(run / "latest.pt")
