"""Exact resume: 2N steps in one go and N steps, then a resume for N more, give the same losses
bit for bit on CPU (model, optimizer, schedule, RNG, data position and carried state restored)."""
import csv

import pytest
import torch

from gatedrnn.cli import main
from gatedrnn.training import TrainConfig, Trainer

from .lm_helpers import CLI, MODEL, TRAIN, corpus_file, one_thread  # noqa: F401

N = 6


def losses_of(trainer, until=None):
    seen = []
    trainer.callback = lambda e: seen.append(e.data["loss"]) if e.kind == "step" else None
    trainer.run(until=until)
    return seen


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {"layer_norm": True})])
def test_library_resume_is_bit_exact_with_dropout_and_cosine_schedule(tmp_path, cell, options):
    path = corpus_file(tmp_path)
    # dropout draws random masks every step: the restored RNG must give the same ones
    cfg = TrainConfig(data=str(path), steps=2 * N, **TRAIN)
    model = {**MODEL, "cell": cell, "num_layers": 2, "dropout": 0.2, "cell_options": options}
    straight = losses_of(Trainer.new(cfg, model, tmp_path / "a"))
    first = losses_of(Trainer.new(cfg, model, tmp_path / "b"), until=N)
    torch.manual_seed(12345)  # the resumed run must not depend on the process's RNG
    second = losses_of(Trainer.resume(tmp_path / "b"))
    assert len(straight) == 2 * N and first + second == straight  # exact float equality, no tolerance


def metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return [(r["step"], r["split"], r["loss"], r["lr"]) for r in csv.DictReader(f) if r["split"] == "train"]


def test_cli_steps_then_resume_matches_one_run(tmp_path):
    path = corpus_file(tmp_path)
    base = ["train", "--data", str(path), *CLI, "--schedule", "constant"]
    assert main([*base, "--steps", str(2 * N), "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--steps", str(N), "--out", str(tmp_path / "two")]) == 0
    assert main(["train", "--resume", str(tmp_path / "two"), "--steps", str(2 * N), "--sample-length", "0"]) == 0
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert len(one) == 2 * N and one == two  # losses written with repr: every bit compared
