"""Exact resume: 2N steps in one go and N steps, then a resume for N more, give the same losses
bit for bit on CPU (model, optimizer, schedule, RNG, data position and carried state restored)."""
import csv
import math

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


def files(run):
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != ".lock"}


def test_a_resume_with_nothing_left_to_do_says_so_and_changes_nothing(tmp_path, capsys):
    path = corpus_file(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), *CLI, "--steps", str(N), "--out", str(run)]) == 0
    before = files(run)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", str(N), "--sample-length", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: the run is at step 6") and "budget of 6 steps" in out
    assert "valid" not in out and "sample" not in out and len(out.strip().splitlines()) == 1
    assert files(run) == before  # no metrics row, no validation, no checkpoint, run.json untouched


def test_the_library_resume_with_nothing_to_do_trains_nothing(tmp_path):
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), steps=N, **TRAIN)
    Trainer.new(cfg, MODEL, tmp_path / "run").run()
    before = files(tmp_path / "run")
    seen = []
    result = Trainer.resume(tmp_path / "run", callback=seen.append).run()
    assert result["trained"] is False and result["step"] == N and [e.kind for e in seen] == ["end"]
    assert files(tmp_path / "run") == before


def lrs(run):
    with open(run / "metrics.csv", newline="") as f:
        return [float(r["lr"]) for r in csv.DictReader(f) if r["split"] == "train"]


def test_a_larger_budget_on_resume_keeps_the_schedule_continuous(tmp_path, capsys):
    """Cosine over 12 steps, stopped at 6 and resumed with 24: the learning rate goes on from where
    it was (no jump from stretching the cosine to the new total) down to the floor at step 24."""
    path = corpus_file(tmp_path)
    train = TrainConfig(data=str(path), steps=2 * N, lr=0.01, **{**TRAIN, "warmup": 0})
    Trainer.new(train, MODEL, tmp_path / "whole").run()
    first = lrs(tmp_path / "whole")
    stopped = tmp_path / "stopped"
    Trainer.new(train, MODEL, stopped).run(until=N)  # paused half way, as an interruption would
    capsys.readouterr()
    assert main(["train", "--resume", str(stopped), "--steps", str(4 * N), "--sample-length", "0"]) == 0
    out = capsys.readouterr().out
    assert "the budget changed: the cosine schedule goes on from lr" in out
    rates = lrs(stopped)
    assert len(rates) == 4 * N and rates[:N] == first[:N]  # the first half is the 12-step run's
    step = abs(first[N] - first[N - 1])  # how much the 12-step schedule moved per step there
    assert abs(rates[N] - rates[N - 1]) <= step  # continuous: no jump at the resume
    assert all(a >= b for a, b in zip(rates, rates[1:]))  # still going down, never back up
    assert 0.001 <= rates[-1] < 0.0011  # at the floor (lr * min_lr_ratio) at the new end


def test_a_time_budget_added_to_a_step_run_leaves_the_schedule_bit_exact(tmp_path):
    """The schedule follows the step budget: adding --minutes on resume changes nothing in it."""
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), steps=2 * N, **TRAIN)
    straight = losses_of(Trainer.new(cfg, MODEL, tmp_path / "a"))
    first = losses_of(Trainer.new(cfg, MODEL, tmp_path / "b"), until=N)
    resumed = Trainer.resume(tmp_path / "b", {"minutes": 60.0})
    assert resumed.schedule_note is None
    assert first + losses_of(resumed) == straight


def test_a_run_keeps_the_split_it_started_with(tmp_path, monkeypatch, capsys):
    """A run records how its text file was split (stripes and fractions); a resume and ``gatedrnn
    eval RUN`` split it the same way, even when the rules (``STRIPE_MIN``, ``FILE_SPLIT``) would
    now split it otherwise."""
    import json

    import gatedrnn
    from gatedrnn.data import corpora

    path = corpus_file(tmp_path)
    n = len(path.read_text())
    monkeypatch.setattr(corpora, "STRIPE_MIN", 10 * n)  # one stripe, as for any short text
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), *CLI, "--steps", "2", "--out", str(run)]) == 0
    monkeypatch.setattr(corpora, "STRIPE_MIN", n // 5)  # the same text would now be cut in 5 stripes,
    monkeypatch.setattr(corpora, "FILE_SPLIT", (0.8, 0.1, 0.1))  # and each stripe 80/10/10
    assert corpora.load_corpus(path).description["stripes"] == 5
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0  # the same tokens: no "changed since"
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "valid", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["loss"]
    trained = gatedrnn.load(run)
    assert trained.corpus["split"] == [0.95, 0.025, 0.025] and trained.corpus["stripes"] == 1
    for stripes, split in ((1, (0.95, 0.025, 0.025)), (5, None), (1, None), (5, (0.95, 0.025, 0.025))):
        valid = corpora.load_corpus(path, vocab=trained.vocab, stripes=stripes, split=split)["valid"]
        same = stripes == 1 and split is not None
        assert (abs(trained.score_tokens(valid, seq_len=256)["loss"] - scored) < 1e-9) == same, (stripes, split)
