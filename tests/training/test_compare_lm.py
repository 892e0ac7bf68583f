"""Cells compared as language models: parameter counts, matching, and a tiny run per cell."""
import math

import pytest

from gatedrnn.data import load_corpus
from gatedrnn.models.heads import count_parameters
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.training.compare import match_parameters
from gatedrnn.training.compare_lm import LMCompareConfig, compare_lm, lm_parameter_count


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "peephole", "cifg", "mogrifier"])
def test_lm_parameter_count_is_the_built_model_s(cell):
    options = {"rounds": 3, "rank": 2} if cell == "mogrifier" else {}
    for layers in (1, 2):
        built = LanguageModel(LMConfig(vocab_size=37, cell=cell, hidden_size=11, num_layers=layers, cell_options=options))
        assert lm_parameter_count(cell, 37, 11, options, num_layers=layers) == count_parameters(built)


def test_lm_match_params_within_one_percent():
    count = lambda c, h: lm_parameter_count(c, 100, h, {})  # noqa: E731
    matches = match_parameters(("lstm", "mogrifier", "gru", "rnn"), "lstm", 256, count)
    assert all(abs(m.deviation) <= 0.01 for m in matches.values()), matches


def test_a_tiny_lm_comparison(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("abc (def) 'g'\n" * 60)
    config = LMCompareConfig(cells=("gru", "lstm"), data=str(text), seq_len=8, steps=2, batch_size=2, eval_every=1,
                             hidden_size=8)
    runs = compare_lm(config, tmp_path / "out", load_corpus(str(text)))
    assert [r.cell for r in runs] == ["gru", "lstm"]
    for r in runs:
        assert r.curve_steps == [0, 1, 2] and r.steps == 2 and r.metric_name == "valid_bits_per_token"
        assert math.isfinite(r.final_metric) and r.chance == pytest.approx(math.log2(13))  # 12 symbols + <unk>
        assert (tmp_path / "out" / "runs" / f"{r.cell}-seed0" / "latest.pt").exists() or \
               (tmp_path / "out" / "runs" / f"{r.cell}-seed0" / "best.pt").exists()
