"""Crash safety of ``gatedrnn train``: a run killed at random moments (SIGKILL: no chance to clean
up) and resumed each time loses no step before its last checkpoint, always leaves a run folder
that loads, and ends at the requested step with exactly the losses of a run never interrupted.
SIGTERM and SIGINT stop it after the current step with a checkpoint and a message.

The moments are drawn from a seeded generator: each kill waits for a random step (printed by the
progress lines, one per step here), then a random fraction of a step more, so kills land in the
forward pass, the backward pass, the optimizer step and in the middle of checkpoint writes.
"""
from __future__ import annotations

import csv
import random
import re
import signal
import time
from pathlib import Path

import pytest

from gatedrnn.cli import main
from gatedrnn.training import load_model
from gatedrnn.training.checkpoint import load_checkpoint

from faults.helpers import Child  # python -m gatedrnn train, its lines read as they come

STEPS, SAVE_EVERY = 150, 4
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(300))
ARGS = ["--cell", "lstm", "--hidden-size", "24", "--seq-len", "12", "--batch-size", "4", "--device", "cpu",
        "--seed", "3", "--steps", str(STEPS), "--save-every", str(SAVE_EVERY), "--eval-every", "1000",
        "--log-every", "1", "--warmup", "10", "--sample-length", "0"]


def train_losses(run: Path) -> dict[int, str]:
    """step -> training loss as written (repr of the float: every bit)."""
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)), f"steps repeated or out of order in metrics.csv: {steps}"
    return {int(r["step"]): r["loss"] for r in rows}


def check_loads(run: Path) -> int:
    """The folder loads as a run (checkpoint, model, vocabulary); returns its step."""
    ckpt = load_checkpoint(run / "latest.pt")
    model, vocab, _ = load_model(run, "latest")
    assert model.config.vocab_size == len(vocab)
    return int(ckpt["step"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def uninterrupted(corpus):
    """The same run, never stopped: the losses every interrupted run must reproduce."""
    import torch

    out = corpus / "reference"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the children run (faults.helpers.ENV): the same reductions, the same bits
    try:
        assert main(["train", "--data", str(corpus / "corpus.txt"), *ARGS, "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    return train_losses(out)


def test_killed_and_stopped_at_random_moments_resumes_exactly(corpus, uninterrupted):
    """Two SIGKILLs, a SIGTERM and a SIGINT at seeded random moments, each followed by --resume;
    after each: the folder loads, nothing before its checkpoint is lost, and the losses so far are
    the uninterrupted run's. The last resume ends at the requested step with every loss equal."""
    rng = random.Random(20261123)
    run = corpus / "killed"
    argv = ["--data", str(corpus / "corpus.txt"), *ARGS, "--out", str(run)]
    checkpoint_step = 0
    signals = (signal.SIGKILL, signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
    for i, signum in enumerate(signals):
        # after the first checkpoint (before it there is nothing to resume), leaving room for the
        # attempts still to come, and 50 steps before the end: a fast machine runs on a dozen
        # steps during the random delay, and a run that ends first cannot be stopped
        low = max(checkpoint_step, SAVE_EVERY) + 1
        target = rng.randrange(low, low + max(1, (STEPS - 50 - low) // (len(signals) - i)))
        child = Child(argv, corpus)
        assert child.wait_for_step(target), "the run ended before it could be stopped:\n" + "\n".join(child.seen)
        time.sleep(rng.uniform(0.0, 0.03))  # a random point inside the following step(s)
        child.proc.send_signal(signum)
        code, text = child.finish()
        # a step's line is printed before its checkpoint is written, so the printed step proves
        # every checkpoint before it
        reached = child.last_step
        step = check_loads(run)
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL, text
            assert (reached - 1) - (reached - 1) % SAVE_EVERY <= step <= reached + SAVE_EVERY, (reached, step)
        else:  # stops after the current step, saves it, and says where it stopped
            assert code == 130, text
            assert f"{signum.name}: stopping after this step and saving a checkpoint" in text, text
            m = re.search(r"interrupted at step (\d+); resume with: gatedrnn train --resume (\S+)", text)
            assert m and int(m.group(1)) == step and Path(m.group(2)) == run, text
            assert reached <= step <= reached + 1
        assert step > checkpoint_step  # each attempt moved the run on
        checkpoint_step = step
        losses = train_losses(run)
        # metrics past the checkpoint may be written before a kill; resume drops and redoes them
        assert {s: losses[s] for s in losses if s <= step} == {s: uninterrupted[s] for s in uninterrupted if s <= step}
        argv = ["--resume", str(run)]

    # what a kill in the middle of a save and of a metrics row leaves, whether or not one of the
    # kills above happened to land there
    (run / ".latest.pt.tmp-999999").write_bytes(b"PK\x03\x04 cut off")
    with open(run / "metrics.csv", "a") as f:
        f.write(f"{STEPS - 1},12")

    code, out = Child(argv, corpus).finish()
    assert code == 0, out
    assert any(line.startswith(f"done: {STEPS} steps") for line in out.splitlines()), out
    assert check_loads(run) == STEPS
    assert train_losses(run) == uninterrupted  # every step once, each with the uninterrupted loss
    leftovers = [p.name for p in run.iterdir() if ".tmp" in p.name]
    assert not leftovers, f"temporary files left in the run folder: {leftovers}"


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("started", ["plain", "sigint-ignored"])
def test_a_second_signal_stops_at_once(corpus, started):
    """The first SIGINT asks for a stop after the current step; a second one, sent once the first
    is acknowledged and while that step still runs, stops at once (``gatedrnn train:
    interrupted``, exit 130): the step is not finished and no checkpoint is written for it.
    Steps of a wide model take long enough (0.3 s or more on any CPU) for the second signal to
    land inside one; no checkpoint is due during the run, so the step after the reported one is
    under way when the first signal comes. A process started with SIGINT ignored (a background
    job of a shell) stops the same way."""
    run = corpus / f"twice-{started}"
    slow = ["--cell", "lstm", "--hidden-size", "1024", "--seq-len", "128", "--batch-size", "32", "--device", "cpu",
            "--steps", "1000", "--save-every", "1000", "--eval-every", "1000", "--log-every", "1",
            "--sample-length", "0"]
    child = Child(["--data", str(corpus / "corpus.txt"), *slow, "--out", str(run)], corpus,
                  preexec_fn=_ignore_sigint if started == "sigint-ignored" else None)
    assert child.wait_for_step(1), "the run ended before it could be stopped:\n" + "\n".join(child.seen)
    child.proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the first signal's handler has run: its message is out
        line = child.lines.get(timeout=60)
        assert line is not None, "the run ended before the first signal was acknowledged:\n" + "\n".join(child.seen)
        child.seen.append(line)
        if "stopping after this step" in line:
            break
    child.proc.send_signal(signal.SIGINT)
    code, text = child.finish()
    assert code == 130, text
    assert "gatedrnn train: interrupted" in text, text  # the second signal's way out ...
    assert "interrupted at step" not in text, text  # ... not the first one's, after a finished step
    assert not (run / "latest.pt").exists()  # the stop's checkpoint was never written
