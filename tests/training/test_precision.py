"""``--precision auto`` (training/precision.py): bf16 only where the processor computes bf16 itself
and torch's kernels run every recurrent layer of the model under autocast."""
from __future__ import annotations

import pytest
import torch

from gatedrnn.models import LanguageModel, LMConfig
from gatedrnn.torch_engine import native as native_module
from gatedrnn.training import precision as precision_module
from gatedrnn.training.precision import resolve_precision

#: models as LMConfig options, and whether every recurrent layer runs on torch's kernels in training
MODELS = [
    ({"cell": "lstm"}, True),
    ({"cell": "gru", "num_layers": 2, "dropout": 0.2}, True),  # between-layer dropout: torch.nn's own
    ({"cell": "lstm", "sum_layer_outputs": True, "num_layers": 2}, True),
    ({"cell": "lstm", "cell_options": {"zoneout": 0.1}}, False),  # masks torch's kernels cannot take
    ({"cell": "lstm", "cell_options": {"layer_norm": True}}, False),
    ({"cell": "peephole"}, False),
    ({"cell": "mogrifier"}, False),
    ({"cell": "lstm", "engine": "fused"}, False),
]


def _model(options):
    return LanguageModel(LMConfig(vocab_size=11, hidden_size=8, **options))


@pytest.mark.parametrize("options,native_layers", MODELS, ids=lambda v: str(v))
@pytest.mark.parametrize("native", [False, True])
def test_auto_is_bf16_only_with_native_bf16_and_torch_kernels(options, native_layers, native, monkeypatch):
    # both readers of the processor's answer: the precision's, and engine="auto"'s under autocast
    monkeypatch.setattr(precision_module, "native_bf16", lambda: native)
    monkeypatch.setattr(native_module, "native_bf16", lambda: native)
    expected = "bf16" if native and native_layers else "float32"
    assert resolve_precision("auto", _model(options), torch.device("cpu")) == expected


@pytest.mark.parametrize("given", ["float32", "bf16"])
def test_a_precision_given_is_kept(given, monkeypatch):
    monkeypatch.setattr(precision_module, "native_bf16", lambda: given == "float32")
    assert resolve_precision(given, _model({"cell": "mogrifier"}), torch.device("cpu")) == given


def test_auto_on_cuda_stays_float32(monkeypatch):
    """Not measured there: a CUDA run keeps float32 (decided before anything touches the device)."""
    monkeypatch.setattr(precision_module, "native_bf16", lambda: True)
    assert resolve_precision("auto", _model({"cell": "lstm"}), torch.device("cuda")) == "float32"
