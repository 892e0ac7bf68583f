"""Output that fails never costs a run: with stdout closed by its reader (``gatedrnn train ... |
head -4``) or full (a redirect onto a full disk, here ``/dev/full``), ``train`` stops printing,
says so once on stderr and goes on training and saving to the end, exit 0. Other commands
end quietly (exit 141, no traceback) when their reader goes away."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gatedrnn.training.checkpoint import load_checkpoint

from .helpers import ENV, TINY, ForkedChild, corpus_file, gatedrnn_cmd, metrics

STEPS = 40
ARGS = [*TINY, "--steps", str(STEPS), "--save-every", "5", "--eval-every", "20"]


def check_finished(run, stderr: str):
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "stdout failed" in stderr and "training goes on" in stderr, stderr
    assert int(load_checkpoint(run / "latest.pt")["step"]) == STEPS  # trained and saved to the end
    steps = [int(r[0]) for r in metrics(run) if r[3] == "train"]
    assert steps == list(range(1, STEPS + 1))  # every step's progress is in metrics.csv


def test_a_reader_that_closes_the_pipe_costs_nothing(tmp_path):
    """``| head -4``: the reader takes four lines and closes its end of a real pipe."""
    run = tmp_path / "run"
    proc = subprocess.Popen(gatedrnn_cmd("train", "--data", str(corpus_file(tmp_path)), *ARGS, "--out", str(run)),
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(4):
        assert proc.stdout.readline()
    proc.stdout.close()  # the reader goes away while training has 30-odd steps to go
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    check_finished(run, stderr)
    # what head saw never reached past the start: the rest went to the null device, not an error


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_terminal_costs_nothing(tmp_path):
    """Every write to stdout fails with ENOSPC (``/dev/full``), from the first line on."""
    run = tmp_path / "run"
    child = ForkedChild(["train", "--data", str(corpus_file(tmp_path)), *ARGS, "--out", str(run)], tmp_path,
                        tmp_path / "log", out=Path("/dev/full"), err=tmp_path / "err")
    assert child.wait(timeout=120) == 0, (tmp_path / "err").read_text()
    check_finished(run, (tmp_path / "err").read_text())


def test_sample_ends_quietly_when_its_reader_goes_away(tmp_path):
    from gatedrnn.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(corpus_file(tmp_path)), *TINY, "--steps", "2", "--out", str(run)]) == 0
    fifo = tmp_path / "stdout"
    os.mkfifo(fifo)
    child = ForkedChild(["sample", str(run), "--length", "200000"], tmp_path, tmp_path / "log", out=fifo,
                        err=tmp_path / "err")
    with open(fifo, "rb") as reader:  # a real pipe; its reader takes a few bytes and goes away
        assert reader.read(10)
    assert child.wait(timeout=120) == 141, (tmp_path / "err").read_text()
    assert (tmp_path / "err").read_text() == ""
