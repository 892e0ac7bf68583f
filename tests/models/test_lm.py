"""The language model: shapes, every cell, weight tying, single steps, config round trip."""
import pytest
import torch

from gatedrnn.models.lm import LanguageModel, LMConfig, detach_state

V = 23


def tokens(T=7, B=3, seed=0):
    return torch.randint(0, V, (T, B), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell,options", [("lstm", {}), ("gru", {}), ("rnn", {"nonlinearity": "relu"}),
                                          ("mogrifier", {"rounds": 3, "rank": 2}), ("peephole", {"proj_size": 5}),
                                          ("cifg", {"layer_norm": True})])
def test_forward_shapes_and_carried_state(cell, options):
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, cell=cell, hidden_size=8, num_layers=2, cell_options=options))
    x = tokens()
    logits, state = model(x)
    assert logits.shape == (7, 3, V)
    # two halves with the state carried give the same logits as the whole sequence
    a, s = model(x[:4])
    b, _ = model(x[4:], detach_state(s))
    torch.testing.assert_close(torch.cat([a, b]), logits, rtol=1e-5, atol=1e-6)  # float32 products regrouped


def test_tied_weights_share_one_tensor_and_use_the_projection_size():
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=12, tie_weights=True, cell_options={"proj_size": 6}))
    assert model.decoder.weight is model.embedding.weight
    assert model.embedding.weight.shape == (V, 6)
    assert model(tokens())[0].shape == (7, 3, V)


def test_tying_with_a_mismatched_embedding_size_is_refused():
    with pytest.raises(ValueError, match=r"tied weights need embed_size equal to the recurrent output size \(16"):
        LMConfig(vocab_size=V, hidden_size=16, embed_size=8, tie_weights=True)


@pytest.mark.parametrize("bad", [{"hidden_size": 0}, {"num_layers": -1}, {"cell": "lstn"}, {"dropout": 1.0},
                                 {"cell_options": {"rounds": 2}}])
def test_bad_configs_say_what_was_expected(bad):
    with pytest.raises(ValueError):
        LMConfig(vocab_size=V, **bad)


def test_step_matches_the_sequence_forward():
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=8, num_layers=2)).eval()
    x = tokens(T=5, B=2)
    full, _ = model(x)
    state = None
    for t in range(5):
        logits, state = model.step(x[t], state)
        torch.testing.assert_close(logits, full[t], rtol=1e-5, atol=1e-6)  # float32, other kernels


def test_config_round_trips_through_plain_types():
    import json

    c = LMConfig(vocab_size=V, cell="lstm", hidden_size=8, cell_options={"drop_gates": ("i",), "forget_bias": 1.0})
    back = LMConfig.from_dict(json.loads(json.dumps(c.to_dict())))
    assert back.to_dict() == c.to_dict()
    LanguageModel(back)


@pytest.mark.parametrize("kernels_on", [True, False])
def test_dropout_runs_at_its_rate_in_training_only(kernels_on, monkeypatch):
    from gatedrnn.torch_engine import compiled

    if kernels_on and compiled.pointwise() is None:
        pytest.skip("the compiled kernels are off or cannot be built here")
    monkeypatch.setattr(compiled, "ENABLED", kernels_on)
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=V, hidden_size=64, embed_size=64, num_layers=2,
                                   sum_layer_outputs=True))
    seen = []
    model.drop.register_forward_hook(lambda m, inp, out: seen.append((out == 0).float().mean().item()))
    x = tokens(T=50, B=8)
    model.train()
    model.set_dropout(0.5)
    a, _ = model(x)
    assert all(0.4 < f < 0.6 for f in seen), seen  # embeddings and the output, each about half dropped
    assert not torch.equal(a, model(x)[0])  # a fresh mask per call
    seen.clear()
    model.set_dropout(0.0)
    model(x)
    assert seen == [0.0, 0.0]
    model.set_dropout(0.5)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
