"""``gatedrnn train --precision bf16``: the training forward under bf16 autocast; ``auto``, the default."""
from __future__ import annotations

import pytest
import torch

from gatedrnn.cli import main
from gatedrnn.torch_engine.native import native_bf16
from gatedrnn.training import TrainConfig, load_model
from gatedrnn.training import precision as precision_module


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


@pytest.mark.parametrize("native", sorted({False, native_bf16()}))
def test_train_auto_precision_says_what_it_chose(native, tmp_path, capsys, monkeypatch):
    """The default, ``auto``: bf16 for a plain LSTM where the processor computes bf16 itself (run
    only where it does: oneDNN's bf16 kernels fail elsewhere), said on the console and recorded
    in the ``start`` event; float32 elsewhere, without a word."""
    monkeypatch.setattr(precision_module, "native_bf16", lambda: native)
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat; the dog sat on the log.\n" * 30)
    code = main(["train", "--data", str(text), "--hidden-size", "8", "--steps", "3", "--seq-len", "8",
                 "--batch-size", "2", "--eval-every", "3", "--warmup", "0", "--sample-length", "0", "--threads", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 0
    said = capsys.readouterr().out
    assert ("precision: bf16 autocast" in said) == native
    model, _, ckpt = load_model(tmp_path / "run")
    assert ckpt["train_config"]["precision"] == "auto"  # decided again where a resume runs
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.parameters())
