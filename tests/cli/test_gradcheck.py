"""``gatedrnn gradcheck``: the table, the exit codes, and one-line errors."""
import subprocess
import sys

from gatedrnn.cli import main


def test_lstm_passes_and_prints_the_table(capsys):
    assert main(["gradcheck", "--cell", "lstm"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["cell", "options", "gradient", "rel.", "error"]
    rows = [line.split() for line in out[1:-1]]
    assert all(row[0] == "lstm" for row in rows)
    gradients = {row[-1] if row[-1] == "FAIL" else row[-2] for row in rows}
    assert {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "x", "h0", "c0", "weight_hr"} <= gradients
    assert not any(row[-1] == "FAIL" for row in rows)
    assert out[-1].startswith("largest relative error") and out[-1].endswith(": ok")


def test_several_cells_and_zoneout(capsys):
    assert main(["gradcheck", "--cell", "rnn", "gru", "--seq-len", "3", "--batch-size", "2", "--zoneout", "0.3"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]
    assert {line.split()[0] for line in rows} == {"rnn", "gru"}


def test_exits_one_above_tolerance(capsys):
    # a tolerance no floating-point check can meet
    assert main(["gradcheck", "--cell", "rnn", "--seq-len", "2", "--batch-size", "1", "--tolerance", "1e-30"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and out.rstrip().endswith("FAILED")


def test_unknown_cell_is_one_line_exit_2():
    proc = subprocess.run([sys.executable, "-m", "gatedrnn", "gradcheck", "--cell", "lstn"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gatedrnn gradcheck: error: unknown cell 'lstn'")
    assert "did you mean 'lstm'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_sizes_are_one_line_exit_2(capsys):
    assert main(["gradcheck", "--cell", "rnn", "--seq-len", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["gatedrnn gradcheck: error: --seq-len and --batch-size must be positive, got 0 and 3"]
