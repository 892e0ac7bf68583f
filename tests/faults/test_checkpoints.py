"""Hostile and damaged checkpoints, and what the commands say about them: a malicious pickle is
refused as such, a checkpoint without its digest only with ``--allow-unverified``, a bad
``best.pt`` falls back to ``latest.pt`` (and the other way), ``--resume`` with ``latest.pt`` gone
goes on from ``best.pt``; ``eval --json`` is strict JSON whatever the loss; a resumed run keeps
its settings (``--sample-length 0``); AdamW at an absurd learning rate stops in one line."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from gatedrnn.cli import main
from gatedrnn.training.checkpoint import load_checkpoint, save_checkpoint

from .helpers import TINY, corpus_file, metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    code = main(["train", "--data", str(corpus_file(root)), *TINY, "--steps", "4", "--save-every", "2",
                 "--eval-every", "2", "--out", str(root / "run")])
    assert code == 0
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def one_line(capsys, code, expected_code=2) -> str:
    err = capsys.readouterr().err
    assert code == expected_code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


class Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_pickle_is_refused_as_such(run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "gatedrnn-checkpoint", "version": 1, "model": Evil()}, run / "best.pt")
    shutil.copy(run / "best.pt", run / "latest.pt")
    line = one_line(capsys, main(["eval", str(run)]))
    assert "asks to build Python objects" in line and "refused without running anything" in line, line
    assert "truncated" not in line and "weights_only" not in line and "Re-running" not in line, line
    assert line.endswith("."), line  # a whole sentence, not cut at a fixed width
    assert not (tmp_path / "PWNED").exists()


def test_a_checkpoint_without_its_digest_needs_an_explicit_flag(run, capsys):
    for name in ("best.pt", "latest.pt"):
        payload = torch.load(run / name, weights_only=True)
        del payload["sha256"]
        payload["model"]["decoder.bias"] += 1.0  # altered weights: nothing left to notice it
        torch.save(payload, run / name)
    for command in (["eval", str(run)], ["sample", str(run), "--length", "3"], ["train", "--resume", str(run)]):
        line = one_line(capsys, main(command))
        assert "carries no SHA-256 digest" in line and "--allow-unverified" in line, line
    assert main(["eval", str(run), "--allow-unverified"]) == 0


def test_a_bad_best_falls_back_to_latest_and_says_so(run, capsys):
    (run / "best.pt").write_bytes((run / "best.pt").read_bytes()[:100])
    assert main(["eval", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 4
    note = captured.err.strip()
    assert len(note.splitlines()) == 1 and "note:" in note and "best.pt" in note, note
    assert "--checkpoint latest" in note, note
    (run / "latest.pt").write_bytes(b"")  # both bad: one line naming both
    line = one_line(capsys, main(["eval", str(run)]))
    assert "best.pt" in line and "latest.pt" in line, line


def test_resume_with_latest_gone_goes_on_from_best(run, capsys, tmp_path):
    best_step = int(load_checkpoint(run / "best.pt")["step"])
    (run / "latest.pt").unlink()
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 0
    err = capsys.readouterr().err
    assert f"latest.pt is missing; resuming from {run / 'best.pt'} (step {best_step})" in err, err
    assert int(load_checkpoint(run / "latest.pt")["step"]) == 6
    steps = [int(r[0]) for r in metrics(run) if r[3] == "train"]
    assert steps == list(range(1, 7))  # the steps after best.pt were done again, once each


def test_resume_with_no_checkpoint_says_what_is_there(run, capsys):
    for name in ("best.pt", "latest.pt"):
        (run / name).unlink()
    line = one_line(capsys, main(["train", "--resume", str(run)]))
    assert "metrics.csv" in line and "run.json" in line and "no checkpoint" in line, line


def test_eval_json_is_strict_json_when_the_loss_is_infinite(run, capsys):
    for name in ("best.pt", "latest.pt"):
        payload = load_checkpoint(run / name)
        payload["model"]["decoder.bias"][0] = -float("inf")  # a token the model says never comes
        save_checkpoint(run / name, payload)
    assert main(["eval", str(run), "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out, parse_constant=lambda c: pytest.fail(f"bare {c} in eval --json: {out}"))
    assert doc["loss"] is None and doc["ppl"] is None, doc
    assert doc["non_finite"]["loss"] == "inf", doc


def test_a_resumed_run_keeps_its_sample_length(tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--data", str(corpus_file(tmp_path)), "--cell", "lstm", "--hidden-size", "16", "--seq-len", "8",
            "--batch-size", "4", "--device", "cpu", "--eval-streams", "2", "--log-every", "1"]
    assert main(["train", *base, "--steps", "2", "--sample-length", "0", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "3"]) == 0
    assert "sample (" not in capsys.readouterr().out
    assert main(["train", "--resume", str(run), "--steps", "4", "--sample-length", "5"]) == 0
    assert "sample (5 char tokens" in capsys.readouterr().out


def test_adamw_at_an_absurd_learning_rate_stops_in_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", "--data", str(corpus_file(tmp_path)), *TINY, "--warmup", "0", "--steps", "5",
                 "--save-every", "1", "--lr", "1e38", "--out", str(run)])
    line = one_line(capsys, code)
    assert "stopped, the last good checkpoint is kept" in line and "--lr" in line, line
    assert not (run / "latest.pt").exists() or torch.isfinite(
        torch.cat([t.flatten() for t in load_checkpoint(run / "latest.pt")["model"].values()])).all()
