"""``gatedrnn compare`` and ``gatedrnn gradflow`` from the command line: tiny runs, files, errors."""
import csv

import pytest

from gatedrnn.cli import main

TINY = ["--steps", "2", "--eval-every", "1", "--hidden-size", "6", "--batch-size", "3", "--seq-len", "5"]


def test_compare_writes_the_three_files(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--cells", "rnn,cifg", "--task", "copy", "--seeds", "2", "--out", str(out),
                 "--task-option", "length=2", "--forget-bias", "1.0", *TINY]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["cell"], r["seed"]) for r in rows] == [("rnn", "0"), ("rnn", "1"), ("cifg", "0"), ("cifg", "1")]
    assert {r["metric_name"] for r in rows} == {"recall_accuracy"}
    assert (out / "results.md").read_text().count("| cifg |") == 1
    assert (out / "curves.png").exists()
    printed = capsys.readouterr().out
    assert "copy (seq_len=5, symbols=8, length=2)" in printed and "wrote" in printed


def test_match_params_reports_the_counts(tmp_path, capsys):
    assert main(["compare", "--cells", "lstm,rnn,gru", "--match-params", "--out", str(tmp_path),
                 *TINY, "--hidden-size", "100"]) == 0
    printed = capsys.readouterr().out
    assert "parameters matched to lstm at hidden size 100" in printed
    rows = {r["cell"]: r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    target = int(rows["lstm"]["params"])
    for cell in ("rnn", "gru"):
        assert abs(int(rows[cell]["params"]) / target - 1) <= 0.01
    assert int(rows["rnn"]["hidden_size"]) > int(rows["gru"]["hidden_size"]) > 100  # 1, 3 and 4 gate blocks
    assert "parameters matched to lstm" in (tmp_path / "results.md").read_text()


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["compare", "--cells", "lstm,lstn", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gatedrnn compare: error: unknown cell 'lstn'") and "\n" not in err
    assert main(["compare", "--task", "adder", "--out", str(tmp_path)]) == 2
    assert "unknown task 'adder'" in capsys.readouterr().err
    assert main(["compare", "--match-params", "--reference", "gru", "--out", str(tmp_path)]) == 2
    assert "--reference must be one of --cells (rnn, lstm), got 'gru'" in capsys.readouterr().err


def test_gradflow_writes_csv_and_png(tmp_path, capsys):
    assert main(["gradflow", "--cells", "rnn,lstm", "--seq-len", "8", "--hidden-size", "6", "--batches", "1",
                 "--batch-size", "2", "--train-steps", "2", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "gradflow.csv")))
    assert len(rows) == 2 * 2 * 8
    assert (tmp_path / "gradflow.png").exists()
    assert "lstm       trained 2" in capsys.readouterr().out


def test_inspect_reads_a_trained_run_and_writes_the_page(tmp_path, capsys):
    from gatedrnn.training.config import TrainConfig
    from gatedrnn.training.loop import Trainer

    text = tmp_path / "text.txt"
    text.write_text('x = f("a", (b, c))\nprint(\'q\')\n' * 40)
    cfg = TrainConfig(data=str(text), steps=2, seq_len=10, batch_size=2, eval_every=2, log_every=1, warmup=0)
    Trainer.new(cfg, {"cell": "lstm", "hidden_size": 8}, tmp_path / "run").run()
    page = tmp_path / "page.html"
    assert main(["inspect", str(tmp_path / "run"), "--text", 'y = ("b")\n', "--unit", "3", "--kind", "h",
                 "--out", str(page)]) == 0
    assert page.read_text().count('<span class="t"') == 10 * 4
    assert "h of layer 0, unit 3" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "run"), "--text", "y", "--unit", "8", "--out", str(page)]) == 2
    assert "unit must be in [0, 7]" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "nothing"), "--text", "y", "--out", str(page)]) == 2


def test_compare_lm_with_matched_parameters(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("abc (def) 'g'\n" * 60)
    assert main(["compare", "--task", "lm", "--data", str(text), "--cells", "lstm,rnn", "--match-params",
                 "--steps", "1", "--seq-len", "8", "--batch-size", "2", "--hidden-size", "24",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "parameters matched to lstm at hidden size 24" in printed and "held-out bits per token" in printed
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert [r["cell"] for r in rows] == ["lstm", "rnn"] and rows[0]["metric_name"] == "valid_bits_per_token"
    assert main(["compare", "--data", str(text), "--out", str(tmp_path / "x")]) == 2
    assert "--data and --level are for --task lm" in capsys.readouterr().err


def test_threads_and_minutes_bound_the_runs(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["compare", "--cells", "lstm", "--task", "adding", "--steps", "1000000", "--eval-every", "1000000",
                     "--minutes", "0.01", "--threads", "1", "--hidden-size", "6", "--batch-size", "3",
                     "--seq-len", "5", "--out", str(tmp_path)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    (row,) = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert 0 < int(row["steps"]) < 1_000_000
    text = tmp_path / "text.txt"
    text.write_text("abc (def) 'g'\n" * 60)
    assert main(["compare", "--task", "lm", "--data", str(text), "--cells", "lstm", "--steps", "100000",
                 "--eval-every", "5", "--minutes", "0.02", "--seq-len", "8", "--batch-size", "2", "--hidden-size", "8",
                 "--out", str(tmp_path / "lm")]) == 0
    printed = capsys.readouterr().out
    assert "100000 steps or 0.02 minutes per run" in printed and "1 of 1 seed |" in printed
    assert "±" not in printed  # one seed: its value, no spread of zero
    (row,) = list(csv.DictReader(open(tmp_path / "lm" / "results.csv")))
    assert 0 < int(row["steps"]) < 100000


def test_bad_threads_and_minutes_are_one_line_errors(tmp_path, capsys):
    for flags, message in ((["--threads", "0"], "--threads must be a positive integer, got 0"),
                           (["--minutes", "0"], "--minutes must be positive, got 0"),
                           (["--minutes", "-2.5"], "--minutes must be positive, got -2.5")):
        assert main(["compare", *flags, "--out", str(tmp_path)]) == 2, flags
        err = capsys.readouterr().err.strip()
        assert err.startswith("gatedrnn compare: error: ") and message in err and "\n" not in err, err
    with pytest.raises(SystemExit) as exit_:  # argparse's refusal, one line too
        main(["compare", "--threads", "two", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "invalid int value: 'two'" in err and "\n" not in err, err


def test_lm_match_params_lands_within_one_percent_with_the_embedding(tmp_path, capsys):
    text = tmp_path / "text.txt"
    text.write_text("".join(chr(97 + (i * 7) % 26) + " .,;:"[i % 5] for i in range(3000)))
    assert main(["compare", "--task", "lm", "--data", str(text), "--cells", "lstm,mogrifier", "--match-params",
                 "--hidden-size", "16", "--steps", "2", "--eval-every", "2", "--seq-len", "8", "--batch-size", "2",
                 "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    rows = {r["cell"]: int(r["params"]) for r in csv.DictReader(open(tmp_path / "out" / "results.csv"))}
    assert abs(rows["mogrifier"] / rows["lstm"] - 1) <= 0.01, (rows, printed)  # the trained models' counts
    assert "embed" in printed and "not within" not in printed
