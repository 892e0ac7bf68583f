"""The training loop: it learns, keeps to its budgets, saves best and latest, reports events,
and refuses run folders it must not touch."""
import math
import time

import pytest
import torch

from gatedrnn.training import CheckpointError, TrainConfig, Trainer, evaluate, generate, load_checkpoint, load_model
from gatedrnn.training.checkpoint import save_checkpoint
from gatedrnn.training.config import TrainConfig as TC

from .lm_helpers import MODEL, TRAIN, corpus_file, one_thread  # noqa: F401


def test_training_lowers_the_validation_loss_and_writes_the_run_folder(tmp_path):
    path = corpus_file(tmp_path)
    events = []
    cfg = TrainConfig(data=str(path), steps=60, lr=1e-2, **{**TRAIN, "eval_every": 30, "log_every": 10})
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run", callback=events.append)
    result = trainer.run()
    valid = [e.data["loss"] for e in events if e.kind == "valid"]
    assert result["step"] == 60 and result["reason"] == "steps"
    assert valid[-1] < valid[0] < math.log(len(trainer.vocab))  # below uniform guessing, and improving
    kinds = {e.kind for e in events}
    assert {"start", "log", "valid", "save", "end"} <= kinds
    for name in ("latest.pt", "best.pt", "metrics.csv", "run.json"):
        assert (tmp_path / "run" / name).is_file(), name
    ckpt = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert ckpt["step"] == 60 and ckpt["data"]["pos"] > 0 and len(ckpt["state"]) == 2  # (h, c) carried
    assert ckpt["state"][0].shape == (1, 4, 16) and ckpt["vocab"]["level"] == "char"


def test_minutes_budget_stops_the_run(tmp_path):
    path = corpus_file(tmp_path)
    cfg = TrainConfig(data=str(path), minutes=0.02, **TRAIN)  # 1.2 seconds
    t0 = time.monotonic()
    result = Trainer.new(cfg, MODEL, tmp_path / "run").run()
    assert result["reason"] == "minutes" and result["step"] > 0
    assert time.monotonic() - t0 < 60  # generous: shared machines stall


def test_request_stop_saves_a_checkpoint_at_the_step_reached(tmp_path):
    path = corpus_file(tmp_path)
    cfg = TrainConfig(data=str(path), steps=1000, **TRAIN)
    trainer = Trainer.new(cfg, MODEL, tmp_path / "run")
    trainer.callback = lambda e: trainer.request_stop() if e.kind == "step" and e.step == 3 else None
    result = trainer.run()
    assert result["reason"] == "interrupted" and result["step"] == 3
    assert load_checkpoint(tmp_path / "run")["step"] == 3


@pytest.mark.parametrize("setup,match", [
    (lambda out: (out / "latest.pt").write_bytes(b"x"), "already holds a run"),
    (lambda out: (out / "notes.txt").write_text("mine"), "is not empty"),
])
def test_a_new_run_never_writes_into_a_used_folder(tmp_path, setup, match):
    out = tmp_path / "run"
    out.mkdir()
    setup(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=match):
        Trainer.new(TrainConfig(data=str(corpus_file(tmp_path)), steps=1, **TRAIN), MODEL, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_refuses_a_different_model_and_a_folder_without_a_run(tmp_path):
    path = corpus_file(tmp_path)
    Trainer.new(TrainConfig(data=str(path), steps=2, **TRAIN), MODEL, tmp_path / "run").run()
    with pytest.raises(ValueError, match=r"model has hidden_size=16, but hidden_size=32 was asked for"):
        Trainer.resume(tmp_path / "run", model_overrides={"hidden_size": 32})
    with pytest.raises(ValueError, match=r"has seq_len=12, but seq_len=20 was asked for"):
        Trainer.resume(tmp_path / "run", {"seq_len": 20})
    with pytest.raises(FileNotFoundError, match="holds no run to resume"):
        Trainer.resume(tmp_path / "empty")


def test_evaluate_one_stream_and_many_agree_closely_and_sampling_is_seeded(tmp_path):
    path = corpus_file(tmp_path)
    Trainer.new(TrainConfig(data=str(path), steps=30, lr=1e-2, **TRAIN), MODEL, tmp_path / "run").run()
    model, vocab, ckpt = load_model(tmp_path / "run")
    tokens = vocab.encode(path.read_text())
    one = evaluate(model, tokens, streams=1)
    many = evaluate(model, tokens, streams=8)
    assert one["tokens"] == len(tokens) - 1
    assert abs(one["loss"] - many["loss"]) < 0.05  # 7 restarts of the state in 13,000 tokens
    assert one["bits_per_token"] == pytest.approx(one["loss"] / math.log(2))
    a = "".join(generate(model, vocab, "def ", 40, seed=1))
    b = "".join(generate(model, vocab, "def ", 40, seed=1))
    assert a == b and len(a) == 40
    greedy = "".join(generate(model, vocab, "def ", 20, temperature=0))
    assert greedy == "".join(generate(model, vocab, "def ", 20, temperature=0, seed=7))
    assert "".join(generate(model, vocab, "", 20, top_k=1, seed=3)) == "".join(generate(model, vocab, "", 20, temperature=0))


def test_checkpoints_load_without_unpickling_objects_and_corruption_is_one_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.ones(3), "vocab": {"level": "char", "tokens": ["a"]}})
    assert torch.equal(load_checkpoint(path)["w"], torch.ones(3))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)
    torch.save({"format": "gatedrnn-checkpoint", "version": 1, "obj": time.struct_time((0,) * 9)}, path)
    with pytest.raises(CheckpointError):  # an arbitrary object is refused, never constructed
        load_checkpoint(path)
