"""``gatedrnn train``'s thread count: chosen by timing with a time budget, fixed otherwise."""
import pytest

from gatedrnn.cli import main

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
