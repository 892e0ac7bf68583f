"""``gatedrnn train``'s thread count: chosen by timing with a time budget, fixed otherwise."""
import os

import pytest

from gatedrnn.cli import main, wait_policy

from training.lm_helpers import CLI, TEXT, one_thread  # noqa: F401


@pytest.mark.parametrize("budget, chosen", [
    (["--minutes", "0.02"], True),
    (["--minutes", "0.02", "--threads", "1"], False),  # a count given is kept
    (["--steps", "20"], False),  # a step budget keeps one count: reproducible bit for bit
])
def test_a_time_budget_chooses_the_thread_count(budget, chosen, tmp_path, capsys, monkeypatch):
    # one candidate: the wiring is what is tested here (the choice itself in tests/training/test_threads.py);
    # two threads in this process would spin (its OpenMP started before the CLI could set the policy)
    monkeypatch.setattr("gatedrnn.training.threads.available_cores", lambda: 1)
    data = tmp_path / "code.txt"
    data.write_text(TEXT)
    assert main(["train", "--data", str(data), *CLI, *budget, "--out", str(tmp_path / "run")]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("threads: ")]
    if chosen:
        assert len(lines) >= 1 and "1 thread " in lines[0] and "ms" in lines[0] and "--threads N" in lines[0]
    else:
        assert lines == []


@pytest.mark.parametrize("argv, policy", [
    (["train", "--data", "x.txt", "--minutes", "2"], None),  # threads chosen by timing: OpenMP's default waits
    (["train"], None),
    (["train", "--threads", "2"], "PASSIVE"),  # a count given is not watched: threads sleep while they wait
    (["train", "--threads=2"], "PASSIVE"),
    (["train", "--thr", "2"], "PASSIVE"),  # argparse takes a unique prefix, so does the policy
    (["eval", "run"], "PASSIVE"),
    (["sample", "run", "--threads", "2"], "PASSIVE"),
    (["bench"], None),  # what the engines cost in a program of one's own
    (["bench", "--threads", "2"], None),
    ([], "PASSIVE"),
])
def test_the_wait_policy_follows_the_thread_choice(argv, policy):
    assert wait_policy(argv) == policy


def test_main_sets_the_policy_and_keeps_a_users_value(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "missing.txt")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["train", "--data", missing]) == 2  # refused, but only after the policy was decided
    assert "OMP_WAIT_POLICY" not in os.environ
    assert main(["eval", str(tmp_path / "no-run")]) != 0
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    main(["eval", str(tmp_path / "no-run")])
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
