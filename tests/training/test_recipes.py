"""Recipes load and flags override them; parameter matching lands within 1%; evaluation carried
across segments equals evaluating the stream in one piece."""
import argparse

import numpy as np
import pytest
import torch

from gatedrnn.cli import build_parser
from gatedrnn.cli.train import apply_recipe
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.experiments.compare import match_parameters
from gatedrnn.experiments.compare_lm import lm_parameter_count
from gatedrnn.training.evaluate import evaluate
from gatedrnn.training.recipes import RecipeError, load_recipe, recipe_names

NAMES = ("mogrifier-char", "lstm-char", "mogrifier-ptb-word", "lstm-ptb-word", "mogrifier-wt2-word", "lstm-wt2-word")


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_loads_into_the_train_command(name):
    assert name in recipe_names()
    args = build_parser().parse_args(["train", "--recipe", name])
    apply_recipe(args)
    recipe = load_recipe(name)
    for key, value in recipe.settings.items():
        assert getattr(args, key) == value
    LMConfig(vocab_size=50, cell=args.cell, hidden_size=8, num_layers=args.num_layers,
             sum_layer_outputs=args.sum_layer_outputs, tie_weights=bool(args.tie_weights))


def test_flags_given_override_the_recipe():
    args = build_parser().parse_args(["train", "--recipe", "mogrifier-char", "--hidden-size", "32", "--rank", "4",
                                      "--beta1", "0.5"])
    apply_recipe(args)
    assert (args.hidden_size, args.rank, args.beta1) == (32, 4, 0.5)
    assert (args.rounds, args.seq_len, args.clip) == (4, 150, 10.0)  # the rest from the recipe


def test_unknown_recipe_names_the_known_ones(capsys):
    with pytest.raises(RecipeError, match="mogrifier-char"):
        load_recipe("no-such-recipe")
    from gatedrnn.cli import main

    assert main(["train", "--recipe", "no-such-recipe"]) == 2
    assert "lstm-char" in capsys.readouterr().err


def test_match_params_lands_within_one_percent_for_language_models():
    V, opts = 148, {"rounds": 4, "rank": 24}
    count = lambda cell, h: lm_parameter_count(cell, V, h, opts, num_layers=2)  # noqa: E731
    m = match_parameters(("mogrifier", "lstm", "gru"), "mogrifier", 160, count)
    for cell in ("lstm", "gru"):
        assert abs(m[cell].deviation) <= 0.01, (cell, m[cell])
        assert count(cell, m[cell].hidden_size + 1) > m["mogrifier"].params * 1.01  # the largest such size
    # the spec-based count is the model's real count, summed layer outputs included
    model = LanguageModel(LMConfig(vocab_size=V, cell="lstm", hidden_size=m["lstm"].hidden_size, num_layers=2, embed_size=0,
                                   sum_layer_outputs=True))
    assert sum(p.numel() for p in model.parameters()) == m["lstm"].params


@pytest.mark.parametrize("sum_outputs", [False, True])
def test_carried_state_evaluation_equals_one_piece(sum_outputs):
    torch.manual_seed(0)
    model = LanguageModel(LMConfig(vocab_size=30, cell="mogrifier", hidden_size=16, num_layers=2,
                                   sum_layer_outputs=sum_outputs, cell_options={"rounds": 3, "rank": 4}))
    tokens = np.random.default_rng(0).integers(0, 30, size=401)
    segmented = evaluate(model, tokens, seq_len=37, streams=1)
    whole = evaluate(model, tokens, seq_len=1000, streams=1)  # one forward over all 400 predictions
    assert segmented["tokens"] == whole["tokens"] == 400
    assert segmented["loss"] == pytest.approx(whole["loss"], rel=1e-5)  # float32 sums in another order
