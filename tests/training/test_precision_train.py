"""``gatedrnn train --precision bf16``: the training forward under bf16 autocast."""
from __future__ import annotations

import pytest
import torch

from gatedrnn.cli import main
from gatedrnn.training import TrainConfig, load_model


def test_train_bf16_runs_and_keeps_float32_weights(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat; the dog sat on the log.\n" * 30)
    code = main(["train", "--data", str(text), "--cell", "peephole", "--hidden-size", "8", "--proj-size", "4",
                 "--steps", "3", "--seq-len", "8", "--batch-size", "2", "--eval-every", "3", "--log-every", "1",
                 "--warmup", "0", "--sample-length", "0", "--precision", "bf16", "--engine", "fused",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    model, _, ckpt = load_model(tmp_path / "run")
    assert ckpt["train_config"]["precision"] == "bf16"  # a resumed run keeps it
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())


def test_precision_is_validated():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
