"""Comparisons: runs, reports, parameter matching, and the adding problem solved by the defaults."""
import csv

import pytest

from gatedrnn.data.tasks import make_task
from gatedrnn.experiments.compare import (CompareConfig, compare, curves_figure, markdown_table, match_parameters,
                                          parameter_count, train_run, write_results)

TINY = dict(steps=4, eval_every=2, hidden_size=8, batch_size=4, eval_batch_size=8, seq_len=6)


@pytest.mark.parametrize("task", ["adding", "copy", "reber", "regression"])
def test_a_tiny_run_of_every_task(task):
    config = CompareConfig(cells=("gru",), task=task, **{**TINY, "seq_len": 9})
    r = train_run("gru", 0, config)
    assert r.steps == 4 and r.curve_steps == [0, 2, 4] and len(r.curve) == 3
    assert r.final_metric == r.curve[-1] and r.params > 0 and r.tokens_per_s > 0
    assert r.metric_name == make_task(task).metric_name


def test_runs_are_reproducible_per_seed_and_differ_across_seeds():
    config = CompareConfig(cells=("lstm",), **TINY)
    a, b, c = train_run("lstm", 1, config), train_run("lstm", 1, config), train_run("lstm", 2, config)
    assert a.curve == b.curve
    assert a.curve != c.curve


def test_compare_writes_csv_markdown_and_png(tmp_path):
    config = CompareConfig(cells=("rnn", "mogrifier"), seeds=(0, 1), cell_options={"rounds": 2, "nonlinearity": "relu"}, **TINY)
    seen = []
    runs = compare(config, on_run=seen.append)
    assert [(r.cell, r.seed) for r in runs] == [("rnn", 0), ("rnn", 1), ("mogrifier", 0), ("mogrifier", 1)]
    assert seen == runs
    paths = write_results(runs, tmp_path / "out")
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 4
    assert {"cell", "seed", "task", "final_metric", "metric_name", "steps", "seconds", "params",
            "steps_to_solve", "tokens_per_s"} <= set(rows[0])
    table = paths["md"].read_text()
    assert "| rnn |" in table and "| mogrifier |" in table and "±" in table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_seed_is_reported_as_one_value_not_a_spread():
    import matplotlib.pyplot as plt

    runs = [train_run("rnn", 3, CompareConfig(cells=("rnn",), **TINY))]
    table = markdown_table(runs)
    assert "±" not in table and "seed 3, final evaluation" in table and "mean" not in table
    fig = curves_figure(runs)
    assert fig.axes[0].get_title() == "adding, seq_len 6 (seed 3)"
    plt.close(fig)
    two = runs + [train_run("rnn", 4, CompareConfig(cells=("rnn",), **TINY))]
    fig = curves_figure(two)
    assert fig.axes[0].get_title().endswith("(mean of 2 seeds, range shaded)") and "±" in markdown_table(two)
    plt.close(fig)


def test_stop_when_solved_ends_the_curve_at_the_solving_evaluation():
    # an MSE threshold any model meets: the run stops at the first evaluation
    task = make_task("adding", seq_len=6)
    task.solved_mse = 10.0
    r = train_run("rnn", 0, CompareConfig(stop_when_solved=True, **TINY), task=task)
    assert r.steps_to_solve == 0 and r.steps == 0 and r.curve_steps == [0]


def test_bad_configs_fail_with_expected_and_found():
    with pytest.raises(ValueError, match="unknown cell 'lstn'"):
        CompareConfig(cells=("lstn",)).validate()
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        CompareConfig(steps=0).validate()


@pytest.mark.parametrize("reference, hidden", [("lstm", 256), ("rnn", 300), ("mogrifier", 96), ("lstm", 64)])
def test_match_params_gives_the_largest_size_within_one_percent(reference, hidden):
    task = make_task("adding")
    cells = ("rnn", "lstm", "gru", "peephole", "cifg", "mogrifier")

    def count(cell, h):
        return parameter_count(cell, task, h, {"rounds": 2})

    matches = match_parameters(cells, reference, hidden, count)
    target = count(reference, hidden)
    for cell, m in matches.items():
        if cell == reference:  # keeps the size it was given
            continue
        sizes = {h: count(cell, h) for h in range(1, 4 * hidden)}
        within = [h for h, n in sizes.items() if abs(n / target - 1) <= 0.01]
        if within:  # the largest hidden size within 1%
            assert m.hidden_size == max(within), (cell, m, within)
        else:  # sizes step too coarsely here: the closest count
            assert abs(m.deviation) == min(abs(n / target - 1) for n in sizes.values()), (cell, m)
    assert matches[reference].hidden_size == hidden
    if reference != "lstm" or hidden != 64:
        assert all(abs(m.deviation) <= 0.01 for m in matches.values())


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru", "peephole", "cifg", "mogrifier"])
def test_parameter_count_is_the_built_model_s(cell):
    from gatedrnn.experiments.compare import build_model
    from gatedrnn.models.heads import count_parameters

    task = make_task("copy")
    for h in (3, 17):
        assert parameter_count(cell, task, h, {"rank": 2}) == count_parameters(build_model(cell, task, h, {"rank": 2}))


def test_match_params_falls_back_to_the_closest_when_sizes_step_coarsely():
    task = make_task("adding")
    m = match_parameters(["lstm"], "rnn", 4, lambda c, h: parameter_count(c, task, h, {}))["lstm"]
    assert abs(m.deviation) > 0.01 and m.hidden_size >= 1


def test_a_wall_clock_budget_ends_a_run_with_an_evaluation():
    config = CompareConfig(cells=("lstm",), **{**TINY, "steps": 1_000_000, "eval_every": 1_000_000}, minutes=0.01)
    r = train_run("lstm", 0, config)
    assert 0 < r.steps < 1_000_000 and r.curve_steps == [0, r.steps] and r.final_metric == r.curve[-1]
    with pytest.raises(ValueError, match="minutes must be positive"):
        CompareConfig(minutes=-1.0).validate()
