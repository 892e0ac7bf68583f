"""The language model's embedding dropout: whole words, off in evaluation, reproducible by seed."""
import pytest
import torch

from gatedrnn.models.lm import LanguageModel, LMConfig

V = 30


def _models(**options):
    torch.manual_seed(0)
    plain = LanguageModel(LMConfig(vocab_size=V, hidden_size=8, engine="fused"))
    reg = LanguageModel(LMConfig(vocab_size=V, hidden_size=8, engine="fused", **options))
    reg.load_state_dict(plain.state_dict())
    return plain, reg


def test_embedding_dropout_is_off_in_eval_and_seeded_in_training():
    plain, reg = _models(embedding_dropout=0.5)
    tokens = torch.randint(0, V, (12, 4), generator=torch.Generator().manual_seed(1))
    plain.eval(), reg.eval()
    torch.testing.assert_close(reg(tokens)[0], plain(tokens)[0], rtol=0, atol=0)
    reg.train()
    torch.manual_seed(5)
    first = reg(tokens)[0]
    torch.manual_seed(5)
    torch.testing.assert_close(reg(tokens)[0], first, rtol=0, atol=0)
    assert not torch.allclose(first, plain(tokens)[0])


def test_embedding_dropout_is_validated_and_saved_in_the_config():
    with pytest.raises(ValueError, match=r"embedding_dropout must be in \[0, 1\), got 1.0"):
        LMConfig(vocab_size=V, embedding_dropout=1.0)
    config = LMConfig(vocab_size=V, embedding_dropout=0.1)
    assert LMConfig.from_dict(config.to_dict()).embedding_dropout == 0.1
