"""The command line built from the config dataclasses: one source of defaults, flags that win over
recipes whatever their value, and usage errors that name the command and suggest the close flag."""
import argparse
import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from gatedrnn import __version__
from gatedrnn.cli import COMMANDS, build_parser, main
from gatedrnn.cli import compare as compare_cli
from gatedrnn.cli.flags import CELL_OPTIONS, cell_options, flag_name
from gatedrnn.cli.train import apply_recipe, configs
from gatedrnn.models.lm import LMConfig
from gatedrnn.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv):
    return build_parser().parse_args(list(argv))


# -- one source of defaults ------------------------------------------------------------------

def test_no_flags_is_the_dataclasses_defaults():
    cfg, model = configs(parse("train"))
    assert cfg == TrainConfig()
    assert LMConfig(vocab_size=50, **model) == LMConfig(vocab_size=50)


def test_the_cli_defaults_are_the_documented_ones():
    """The defaults users got from gatedrnn train before the dataclasses held them (README)."""
    cfg = TrainConfig()
    assert (cfg.seq_len, cfg.lr, cfg.warmup, cfg.batch_size, cfg.steps, cfg.minutes) == (64, 8e-3, 30, 32, 0, 5.0)
    assert (LMConfig(vocab_size=2).hidden_size, LMConfig(vocab_size=2).embed_size) == (384, 128)
    assert TrainConfig(steps=100).minutes == 0  # a step budget alone: no clock limit
    assert TrainConfig(steps=100, minutes=2).minutes == 2


@pytest.mark.parametrize("cls", [TrainConfig, LMConfig])
def test_every_flag_and_its_help_come_from_the_dataclass(cls):
    train = build_parser().commands["train"]
    actions = {a.dest: a for a in train._actions}
    documented = [f for f in fields(cls) if "help" in f.metadata]
    assert len(documented) >= 8
    for f in documented:
        action = actions[f.name]
        assert flag_name(f.name) in action.option_strings and action.default is None
        assert f.metadata["help"] in action.help
        if "default_text" not in f.metadata:
            shown = re.search(r"\(default (\S+)\)$", action.help).group(1)
            expected = {True: "on", False: "off"}.get(f.default, f.default) if isinstance(f.default, bool) else f.default
            assert shown == (f"{expected:g}" if isinstance(expected, float) else str(expected)), f.name


def test_every_flag_given_reaches_the_config():
    cfg, model = configs(parse("train", "--seq-len", "7", "--lr", "0.01", "--min-lr-ratio", "0.5",
                               "--hidden-size", "12", "--tie-weights", "--drop-gates", "o,i", "--steps", "3"))
    assert (cfg.seq_len, cfg.lr, cfg.min_lr_ratio, cfg.steps, cfg.minutes) == (7, 0.01, 0.5, 3, 0)
    assert model == {"hidden_size": 12, "tie_weights": True, "cell_options": {"drop_gates": ("o", "i")}}


def test_the_library_and_the_command_start_the_same_run(tmp_path, monkeypatch, capsys):
    """Trainer.new(TrainConfig(), {}) and gatedrnn train write the same run.json (the run is not trained)."""
    from gatedrnn.training import Trainer

    data = tmp_path / "text.txt"
    data.write_text("the quick brown fox jumps over the lazy dog\n" * 400)
    Trainer.new(TrainConfig(data=str(data)), {}, tmp_path / "library")
    monkeypatch.setattr(Trainer, "run", lambda self, until=None: {"reason": "interrupted", "step": 0})
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "cli")]) == 130
    library, cli = (json.loads((tmp_path / name / "run.json").read_text()) for name in ("library", "cli"))
    assert library == cli and library["train"]["minutes"] == 5.0


def test_option_strings_are_parsed_at_the_command_line():
    assert cell_options(parse("train", "--drop-gates", "i,o")) == {"drop_gates": ("i", "o")}
    assert cell_options(parse("train", "--drop-gates", "o i", "--layer-norm")) == {"drop_gates": ("o", "i"),
                                                                                   "layer_norm": True}
    assert cell_options(parse("train")) == {}  # an unset option is absent, not None
    assert set(CELL_OPTIONS) <= {a.dest for a in build_parser().commands["compare"]._actions}


# -- recipes and flags --------------------------------------------------------------------------

def test_train_flags_win_over_a_recipe_even_at_their_default_value():
    args = parse("train", "--recipe", "mogrifier-char", "--hidden-size", "256", "--lr", "0.005")
    apply_recipe(args)
    cfg, model = configs(args)
    assert model["hidden_size"] == 256 and cfg.lr == 0.005  # the recipe says 160 and 3e-3
    assert cfg.seq_len == 150 and model["cell_options"]["rounds"] == 4  # the rest is the recipe's


def test_compare_flags_win_over_a_recipe_even_at_their_default_value():
    args = parse("compare", "--recipe", "mogrifier-char", "--seeds", "1", "--no-match-params")
    compare_cli.apply_recipe(args)
    assert args.seeds == (0,) and args.match_params is False  # the recipe says 3 seeds, matched
    args = parse("compare", "--recipe", "mogrifier-char")
    compare_cli.apply_recipe(args)
    assert args.seeds == (0, 1, 2) and args.match_params is True and args.task == "lm"


# -- usage ----------------------------------------------------------------------------------

def test_version_matches_the_package():
    declared = re.search(r'^version = "(.*)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert __version__ == declared
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"gatedrnn {__version__}"


def test_a_bare_gatedrnn_prints_the_usage_and_the_commands(capsys):
    assert main([]) == 2  # a usage error, as argparse's
    err = capsys.readouterr().err
    assert err.startswith("usage: gatedrnn") and all(name in err for name in COMMANDS) and "--version" in err


@pytest.mark.parametrize("argv,expected", [
    (["train", "--seq-ln", "5"], "gatedrnn train: error: unrecognized arguments: --seq-ln 5; did you mean --seq-len?"),
    (["compare", "--seds", "2"], "gatedrnn compare: error: unrecognized arguments: --seds 2; did you mean --seeds?"),
    (["train", "--level", "CHAR"], "gatedrnn train: error: argument --level: invalid choice: 'CHAR'"),
    (["trian"], "did you mean train?"),
])
def test_usage_errors_name_the_command_and_suggest(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    if "CHAR" in argv:
        assert "did you mean char?" in err


def test_a_cell_in_another_case_suggests_the_name(tmp_path, capsys):
    assert main(["train", "--cell", "LSTM", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown cell 'LSTM'" in err and "did you mean 'lstm'?" in err and not (tmp_path / "r").exists()


def test_no_restructuredtext_markup_in_any_help():
    parser = build_parser()
    pages = [parser.format_help()] + [p.format_help() for p in parser.commands.values()]
    assert not [page.splitlines()[0] for page in pages if "``" in page]


@pytest.mark.parametrize("task", ["adding", "lm"])
def test_compare_without_flags_is_its_config_dataclass(task):
    from gatedrnn.experiments.compare import CompareConfig
    from gatedrnn.experiments.compare_lm import LMCompareConfig

    config = LMCompareConfig() if task == "lm" else CompareConfig()
    args = parse("compare", "--task", task)
    compare_cli.resolve(args, config)
    names = ("cells", "seeds", "steps", "hidden_size", "lr", "batch_size", "clip", "eval_every", "seq_len")
    assert {n: getattr(args, n) for n in names} == {n: getattr(config, n) for n in names}
    help_text = build_parser().commands["compare"].format_help()
    assert f"{config.lr:g}" in help_text and ",".join(config.cells) in help_text
