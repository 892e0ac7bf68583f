"""SIGKILLs at random moments, each followed by ``--resume``, many in a row: the run folder always
loads and evaluates, no checkpoint ever goes back in steps, and the run ends with exactly the
metrics (every training and validation loss, bit for bit) of a run never interrupted.

The moments come from a seeded generator: a random step, then a random fraction of a step, so
kills land in the forward and backward passes, the optimizer step, the validation and the middle
of checkpoint and metrics writes. Three kills run by default; twenty with ``pytest -m slow``.
"""
from __future__ import annotations

import random
import signal
import time

import numpy as np
import pytest

from gatedrnn.cli import main
from gatedrnn.training import evaluate, load_model
from gatedrnn.training.checkpoint import load_checkpoint

from .helpers import TINY, ForkedChild, corpus_file, metrics

SAVE_EVERY, EVAL_EVERY = 2, 10


def args(steps):
    return [*TINY, "--steps", str(steps), "--save-every", str(SAVE_EVERY), "--eval-every", str(EVAL_EVERY)]


@pytest.mark.parametrize("kills", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_killed_again_and_again_ends_as_if_never_interrupted(tmp_path, kills):
    steps = 10 * kills + 30
    corpus = corpus_file(tmp_path)
    assert main(["train", "--data", str(corpus), *args(steps), "--out", str(tmp_path / "reference")]) == 0
    reference = metrics(tmp_path / "reference")

    rng = random.Random(20261130 + kills)
    run = tmp_path / "killed"
    argv = ["--data", str(corpus), *args(steps), "--out", str(run)]
    saved = 0
    tokens = np.arange(40) % 7
    for i in range(kills):
        # past the next checkpoint (so each round moves the run on), leaving room for the rest
        low = saved + SAVE_EVERY + 1
        target = rng.randrange(low, low + max(1, (steps - 20 - low) // (kills - i)))
        child = ForkedChild(["train", *argv], tmp_path, tmp_path / f"log-{i}")
        assert child.wait_for_step(target), "the run ended before it could be killed:\n" + "\n".join(child.seen)
        time.sleep(rng.uniform(0.0, 0.01))
        child.send_signal(signal.SIGKILL)
        code, text = child.finish()
        assert code == -signal.SIGKILL, text
        step = int(load_checkpoint(run / "latest.pt")["step"])
        assert step >= saved + SAVE_EVERY, (step, saved)  # never back in steps; each round moved on
        saved = step
        model, vocab, _ = load_model(run, "latest")  # the folder always loads and evaluates
        assert np.isfinite(evaluate(model, tokens, seq_len=8)["loss"])
        done = [r for r in metrics(run) if int(r[0]) <= step]
        assert done == [r for r in reference if int(r[0]) <= step]  # what the checkpoint covers is exact
        argv = ["--resume", str(run)]

    child = ForkedChild(["train", *argv], tmp_path, tmp_path / "log-last")
    code, text = child.finish()
    assert code == 0, text
    assert f"done: {steps} steps" in text, text
    assert metrics(run) == reference  # every step once, every loss and validation the reference's
    assert int(load_checkpoint(run / "latest.pt")["step"]) == steps
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name or p.name == ".lock"]
