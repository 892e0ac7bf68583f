"""ONNX export of a language model: stepping the exported graph token by token, its state fed
back, gives the model's next-token logits."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from gatedrnn.models.lm import LanguageModel, LMConfig, state_tensors  # noqa: E402
from gatedrnn.experiments.export import export_lm, io_names  # noqa: E402

V = 20
CONFIGS = [
    LMConfig(vocab_size=V, cell="lstm", hidden_size=16, num_layers=2),  # torch.nn's kernels
    LMConfig(vocab_size=V, cell="mogrifier", hidden_size=16, num_layers=2, cell_options={"proj_size": 8, "rounds": 3}),
    LMConfig(vocab_size=V, cell="gru", hidden_size=16, engine="fused", tie_weights=True),
]


def check_onnx_matches(model, path, steps=4, batch=3, seq_len=1, seed=0):
    """Runs the exported graph and the model side by side; returns the largest logit difference."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, _ = io_names(model)
    gen = torch.Generator().manual_seed(seed)
    state = model.init_state(batch)
    onnx_state = [s.numpy() for s in state_tensors(state)]
    worst = 0.0
    for _ in range(steps):
        tokens = torch.randint(0, model.config.vocab_size, (seq_len, batch), generator=gen)
        got = session.run(None, {"tokens": tokens.numpy(), **dict(zip(inputs[1:], onnx_state))})
        with torch.no_grad():
            want, state = model(tokens, state)
        worst = max(worst, float((torch.from_numpy(got[0]) - want).abs().max()))
        onnx_state = got[1:]
    return worst


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.cell)
def test_exported_steps_match_the_model(config, tmp_path):
    torch.manual_seed(0)
    model = LanguageModel(config).eval()
    export_lm(model, tmp_path / "lm.onnx", seq_len=1, batch_size=1)
    # float32 through the same ops in another runtime, the state fed back four times: rounding
    # of values of order 1, well inside the 1e-5 the modules' export tests hold
    assert check_onnx_matches(model, tmp_path / "lm.onnx", batch=3) < 1e-5


def test_export_leaves_training_mode_as_it_was(tmp_path):
    model = LanguageModel(LMConfig(vocab_size=V, cell="rnn", hidden_size=8)).train()
    export_lm(model, tmp_path / "lm.onnx")
    assert model.training


def test_export_refuses_bad_sizes(tmp_path):
    model = LanguageModel(LMConfig(vocab_size=V, cell="rnn", hidden_size=8))
    with pytest.raises(ValueError, match="seq_len"):
        export_lm(model, tmp_path / "lm.onnx", seq_len=0)


def test_cli_export_of_a_trained_run(tmp_path, capsys):
    import json

    from gatedrnn.cli import main
    from gatedrnn.training import load_model
    from gatedrnn.training.config import TrainConfig
    from gatedrnn.training.loop import Trainer

    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat; the dog sat on the log.\n" * 30)
    cfg = TrainConfig(data=str(text), steps=2, seq_len=8, batch_size=2, eval_every=2, log_every=1, warmup=0)
    options = {"cell": "peephole", "hidden_size": 8, "num_layers": 2, "cell_options": {"proj_size": 4}}
    Trainer.new(cfg, options, tmp_path / "run").run()
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "lm.onnx")]) == 0
    assert "wrote" in capsys.readouterr().out
    model, vocab, _ = load_model(tmp_path / "run")
    # the run's own model, stepped beside the graph: float32 rounding only (see above)
    assert check_onnx_matches(model, tmp_path / "lm.onnx", batch=2) < 1e-5
    meta = ort.InferenceSession(str(tmp_path / "lm.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(meta["gatedrnn.vocab"]) == vocab.to_dict()
    assert json.loads(meta["gatedrnn.model_config"])["cell"] == "peephole"
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "x.onnx")]) == 2
