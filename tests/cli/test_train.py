"""``gatedrnn train``, ``sample`` and ``eval`` end to end on a tiny corpus."""
import json

import pytest

from gatedrnn.cli import main

from training.lm_helpers import CLI, TEXT, one_thread  # noqa: F401


@pytest.fixture
def run(tmp_path, capsys):
    data = tmp_path / "code.txt"
    data.write_text(TEXT)
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), *CLI[:-4], "--steps", "25", "--lr", "1e-2", "--log-every", "5",
                 "--eval-every", "10", "--sample-length", "30", "--out", str(out)])
    assert code == 0
    return out, data, capsys.readouterr().out


def test_train_prints_progress_validation_and_a_sample(run):
    out, _, text = run
    lines = text.splitlines()
    assert lines[0].startswith("training: lstm, hidden 16 x 1 layer(s)")
    assert any(l.startswith("batch 4 x 12 tokens, adamw lr 0.01 (cosine), weight decay 0.1, budget 25 steps")
               for l in lines)
    progress = [l for l in lines if l.startswith("step ")]
    assert len(progress) == 5 and all(k in progress[0] for k in ("loss", "bpc", "tok/s", "ETA"))
    assert any(l.startswith("valid step     10") for l in lines)
    assert any(l.startswith("done: 25 steps") for l in lines)
    assert "sample (30 char tokens" in text
    assert {p.name for p in out.iterdir()} >= {"latest.pt", "best.pt", "metrics.csv", "run.json", "loss.png"}


def test_eval_json_and_text(run, capsys):
    out, data, _ = run
    assert main(["eval", str(out), "--json", "--split", "valid"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"loss", "ppl", "bits_per_token", "step"} <= set(result) and result["step"] == 25
    assert main(["eval", str(out), "--data", str(data)]) == 0
    line = capsys.readouterr().out
    assert "(whole file)" in line and "nats/token" in line and "bits/token" in line and "step 25" in line


def test_sample_streams_the_prompt_and_its_continuation(run, capsys):
    out, _, _ = run
    assert main(["sample", str(out), "--prompt", "def f", "--length", "40", "--seed", "1", "--top-k", "5"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("def f") and len(first) == len("def f") + 40 + 1
    main(["sample", str(out), "--prompt", "def f", "--length", "40", "--seed", "1", "--top-k", "5"])
    assert capsys.readouterr().out == first  # a seed repeats the sample


def test_an_existing_run_is_refused_without_resume(run, capsys):
    out, data, _ = run
    before = (out / "latest.pt").read_bytes()
    assert main(["train", "--data", str(data), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    assert (out / "latest.pt").read_bytes() == before


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_and_sample_take_threads(run, command, capsys, monkeypatch):
    import torch

    out, _, _ = run
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    extra = ["--length", "5"] if command == "sample" else []
    assert main([command, str(out), "--threads", "2", *extra]) == 0
    assert asked == [2]
    assert main([command, str(out), "--threads", "0", *extra]) == 2
    assert "--threads must be a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("steps,minutes,expected", [(0, 1.0, "budget 1 minute;"), (1, 0.0, "budget 1 step;"),
                                                    (500, 2.5, "budget 500 steps and 2.5 minutes;"),
                                                    (0, 0.0, "budget no limit;")])
def test_the_budget_line_is_grammatical(steps, minutes, expected):
    from gatedrnn.cli.train import Printer
    from gatedrnn.training import Event, TrainConfig

    lines = []
    train = TrainConfig(steps=steps, minutes=minutes).to_dict()
    Printer(lambda *a, **k: lines.append(" ".join(map(str, a))))(Event("start", 0, {
        "corpus": "x at char level: 3 tokens", "params": 10, "device": "cpu", "out": "runs/a", "world_size": 1,
        "resumed": False, "model": {"cell": "lstm", "cell_options": {}, "hidden_size": 4, "num_layers": 1},
        "train": train}))
    assert expected in lines[2]


@pytest.mark.parametrize("extra, width", [([], None), (["--hidden-size", "16"], 16), (["--cell", "gru"], "default")])
def test_a_long_time_budget_widens_the_default_model_and_says_so(extra, width, tmp_path, capsys):
    from dataclasses import fields

    from gatedrnn.models.lm import LMConfig
    from gatedrnn.training.autosize import WIDE_HIDDEN, WIDE_MINUTES

    data = tmp_path / "code.txt"
    data.write_text(TEXT)
    assert CLI[:2] == ["--hidden-size", "16"]
    flags = [*CLI[2:], *extra]
    assert main(["train", "--data", str(data), *flags, "--minutes", f"{WIDE_MINUTES:g}", "--steps", "2",
                 "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    text = capsys.readouterr().out
    said = [line for line in text.splitlines() if line.startswith("width:")]
    if width == "default":  # a cell the rule was not measured on: LMConfig's default
        width = next(f.default for f in fields(LMConfig) if f.name == "hidden_size")
    if width:
        assert not said and f"hidden {width} x 1" in text
    else:
        assert said == [f"width: {WIDE_HIDDEN}, the default model's under a time budget of {WIDE_MINUTES:g} minutes "
                        f"or more (--hidden-size N sets it)"]
        assert f"hidden {WIDE_HIDDEN} x 1" in text
