"""``gatedrnn.load``: a trained run from Python gives what ``gatedrnn sample`` and ``eval`` print."""
import contextlib
import inspect
import io
import json

import pytest
import torch

import gatedrnn
from gatedrnn.cli import build_parser, main
from gatedrnn.training import CheckpointError, Run, TrainConfig
from gatedrnn.training.run import RunConfig

from training.lm_helpers import CLI, TEXT, one_thread  # noqa: F401


def cli(*argv) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(argv)) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    data = tmp / "code.txt"
    data.write_text(TEXT)
    out = tmp / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli("train", "--data", str(data), *CLI, "--steps", "30", "--lr", "1e-2", "--log-every", "10",
            "--eval-every", "20", "--out", str(out))
    finally:
        torch.set_num_threads(before)
    return out, tmp


def test_load_gives_an_eval_mode_module_its_vocabulary_and_config(trained):
    out, _ = trained
    run = gatedrnn.load(out)
    assert isinstance(run, Run) and isinstance(run.model, torch.nn.Module) and not run.model.training
    assert run.vocab.level == "char" and len(run.vocab) == run.config.model.vocab_size
    assert isinstance(run.config, RunConfig) and isinstance(run.config.train, TrainConfig)
    assert (run.config.train.seq_len, run.config.train.steps, run.config.model.hidden_size) == (12, 30, 16)
    assert run.path.name == "best.pt" and run.step > 0
    assert gatedrnn.load(out, "latest").step == 30
    assert gatedrnn.load(out / "latest.pt").step == 30  # a checkpoint file works as well as the folder
    assert json.loads(json.dumps(run.config.to_dict()))["train"]["batch_size"] == 4
    assert "lstm 16 x 1" in repr(run)


def test_encode_decode_round_trip_and_feed_the_model(trained):
    run = gatedrnn.load(trained[0])
    ids = run.encode("def f(x):\n")
    assert ids.dtype == torch.long and ids.shape == (10,)
    assert run.decode(ids) == "def f(x):\n" and run.decode(ids.tolist()) == "def f(x):\n"
    assert run.encode("é").tolist() == [run.vocab.unk]  # unseen characters read as <unk>
    logits, _ = run.model(ids.unsqueeze(1))
    assert logits.shape == (10, 1, len(run.vocab))


@pytest.mark.parametrize("args", [
    {"prompt": "def f", "length": 40, "seed": 1, "top_k": 5},
    {"length": 30, "seed": 3, "temperature": 1.3},
    {"prompt": "return", "length": 25, "temperature": 0.0},
    {"prompt": "x", "length": 0, "seed": 0},
])
@pytest.mark.parametrize("which", ["best", "latest"])
def test_sample_is_the_text_gatedrnn_sample_prints(trained, args, which):
    out, _ = trained
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in args.items()]
    printed = cli("sample", str(out), "--checkpoint", which, *flags)
    text = gatedrnn.load(out, which).sample(**args)
    assert printed == text + "\n"
    assert text.startswith(args.get("prompt", ""))
    assert len(text) == len(args.get("prompt", "")) + args["length"]  # char level: one character per token


def test_score_gives_the_figures_of_gatedrnn_eval_data(trained):
    out, tmp = trained
    text = TEXT[:3000].replace("\n", "\r\n") + "é€"  # Windows line ends and unseen characters, as a file
    path = tmp / "held_out.txt"
    path.write_bytes(text.encode("utf-8"))
    for which, flags in (("best", []), ("latest", ["--seq-len", "50", "--streams", "3"])):
        printed = json.loads(cli("eval", str(out), "--data", str(path), "--json", "--checkpoint", which, *flags))
        kw = {"seq_len": 50, "streams": 3} if flags else {}
        scored = gatedrnn.load(out, which).score(text, **kw)
        for key in ("loss", "bits_per_token", "ppl", "tokens", "unknown_tokens"):
            assert scored[key] == printed[key], key  # exactly: the same function on the same tokens
    assert scored["unknown_tokens"] == 2 and printed["step"] == 30


def test_the_command_line_defaults_are_the_python_defaults():
    parser = build_parser()
    sample = parser.parse_args(["sample", "RUN"])
    evaluate = parser.parse_args(["eval", "RUN"])
    defaults = {n: p.default for n, p in inspect.signature(Run.sample).parameters.items() if n != "self"}
    assert defaults == {k: getattr(sample, k) for k in defaults}
    score = {n: p.default for n, p in inspect.signature(Run.score).parameters.items() if n not in ("self", "text")}
    assert score == {"seq_len": evaluate.seq_len, "streams": evaluate.streams}
    stream = {n: p.default for n, p in inspect.signature(Run.stream).parameters.items() if n != "self"}
    assert stream == defaults
    assert sample.checkpoint == evaluate.checkpoint == inspect.signature(gatedrnn.load).parameters["checkpoint"].default


def test_bad_input_raises_one_clear_line(trained, tmp_path):
    out, _ = trained
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file: .*nothing.pt"):
        gatedrnn.load(tmp_path / "nothing.pt")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        gatedrnn.load(tmp_path)
    with pytest.raises(ValueError, match="'best' or 'latest', got 'last'"):
        gatedrnn.load(out, "last")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        gatedrnn.load(tmp_path / "junk.pt")
    run = gatedrnn.load(out)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        run.sample("€", length=5)
    with pytest.raises(ValueError, match="temperature must not be negative"):
        run.sample(temperature=-1)
    with pytest.raises(ValueError, match="at least 2"):
        run.score("d")
