"""The regularisation flags of the command line: ``gatedrnn gradcheck --dropout-state``."""
from gatedrnn.cli import main


def test_gradcheck_with_state_dropout_and_zoneout(capsys):
    argv = ["gradcheck", "--cell", "lstm", "gru", "--seq-len", "3", "--batch-size", "2",
            "--dropout-state", "0.5", "--zoneout", "0.3"]
    assert main(argv) == 0
    assert capsys.readouterr().out.rstrip().endswith(": ok")


def test_gradcheck_refuses_a_state_dropout_of_one(capsys):
    assert main(["gradcheck", "--cell", "rnn", "--dropout-state", "1"]) == 2
    assert "--dropout-state must be in [0, 1), got 1.0" in capsys.readouterr().err
