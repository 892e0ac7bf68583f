"""Train cells side by side on a synthetic task, over seeds; write the table, the CSV and the curves.

    config = CompareConfig(cells=("rnn", "lstm"), task="adding", seq_len=50, seeds=(0, 1, 2))
    runs = compare(config, on_run=print)           # one RunResult per (cell, seed)
    write_results(runs, config, "out/")             # results.csv, results.md, curves.png

Each run is seeded twice: ``torch.manual_seed(seed)`` for the initial weights and a NumPy
generator for the training batches. The evaluation batch is the same for every cell and seed, so
the curves differ only by the model.
"""
from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cells import CELLS, make_cell
from ..data.tasks import Task, make_task
from ..models.heads import TaskModel, count_parameters

#: the evaluation batch's seed, shared by every run so that curves compare like with like
EVAL_SEED = 20_170_601


@dataclass
class CompareConfig:
    """Everything a comparison depends on; defaults solve the adding problem at T=50 with an LSTM."""

    cells: tuple[str, ...] = ("rnn", "lstm")
    task: str = "adding"
    seq_len: int | None = None
    task_options: dict = field(default_factory=dict)
    steps: int = 1500
    seeds: tuple[int, ...] = (0,)
    hidden_size: int = 64
    #: hidden size per cell, overriding ``hidden_size`` (set by parameter matching)
    hidden_sizes: dict = field(default_factory=dict)
    lr: float = 1e-2
    batch_size: int = 32
    clip: float = 1.0
    eval_every: int = 50
    eval_batch_size: int = 512
    #: stop a run at the first evaluation that solves the task (the curve ends there)
    stop_when_solved: bool = False
    #: wall-clock budget of each run in minutes, evaluations included; 0: none
    minutes: float = 0.0
    #: cell options, each passed to the cells that accept it
    cell_options: dict = field(default_factory=dict)

    def hidden_size_of(self, cell: str) -> int:
        return self.hidden_sizes.get(cell, self.hidden_size)

    def validate(self) -> None:
        for cell in self.cells:
            make_cell(cell)  # unknown names fail with the close ones suggested
        for name in ("steps", "hidden_size", "batch_size", "eval_every", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.seeds:
            raise ValueError("need at least one seed, got none")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not self.minutes >= 0:
            raise ValueError(f"minutes must be positive (or 0 for no limit), got {self.minutes!r}")
        make_task(self.task, self.seq_len, **self.task_options)


@dataclass
class RunResult:
    """One cell trained on one seed: the learning curve and its summary."""

    cell: str
    seed: int
    task: str
    seq_len: int
    hidden_size: int
    params: int
    metric_name: str
    chance: float
    solved_at: float
    steps: int
    final_metric: float
    steps_to_solve: int | None
    seconds: float
    tokens_per_s: float
    curve_steps: list = field(default_factory=list)
    curve: list = field(default_factory=list)
    curve_seconds: list = field(default_factory=list)  # training seconds at each point (LM runs)

    def row(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k not in ("curve_steps", "curve", "curve_seconds")}
        row["steps_to_solve"] = "" if self.steps_to_solve is None else self.steps_to_solve
        return row


def options_for(cell: str, options: dict) -> dict:
    """The subset of ``options`` that ``cell`` accepts: ``--rounds`` goes to the Mogrifier only.
    The modules' regularisation options go to every cell (``zoneout_c`` to those with a ``c``)."""
    from ..torch_engine.regularisation import OPTIONS

    accepted = set(CELLS[cell].options) | set(OPTIONS)
    if not CELLS[cell].has_cell_state:
        accepted.discard("zoneout_c")
    return {k: v for k, v in options.items() if k in accepted}


def build_model(cell: str, task: Task, hidden_size: int, cell_options: dict) -> TaskModel:
    return TaskModel(cell, task.input_size, hidden_size, task.output_size, readout=task.readout,
                     **options_for(cell, cell_options))


def parameter_count(cell: str, task: Task, hidden_size: int, cell_options: dict) -> int:
    """Total parameters of the task model (recurrent layer and readout) at ``hidden_size``,
    from the cell's parameter spec: matching searches many sizes, building none of them."""
    c = make_cell(cell, **options_for(cell, cell_options))
    recurrent = sum(math.prod(s.shape) for s in c.param_spec(task.input_size, hidden_size))
    out = c.state_sizes(hidden_size)[0]
    return recurrent + out * task.output_size + task.output_size


def train_run(cell: str, seed: int, config: CompareConfig, task: Task | None = None,
              on_eval=None) -> RunResult:
    """Train one cell from one seed; ``on_eval(step, value)`` is called at each evaluation."""
    task = task or make_task(config.task, config.seq_len, **config.task_options)
    hidden = config.hidden_size_of(cell)
    torch.manual_seed(seed)
    model = build_model(cell, task, hidden, config.cell_options)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = np.random.default_rng(seed)
    eval_batch = task.sample(config.eval_batch_size, np.random.default_rng(EVAL_SEED))

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            value = task.metric(model(eval_batch.x), eval_batch)
        model.train()
        return value

    curve_steps, curve = [0], [evaluate()]
    solved_step = 0 if task.is_solved(curve[0]) else None
    train_seconds, tokens, step = 0.0, 0, 0
    began = time.perf_counter()
    out_of_time = lambda: config.minutes and time.perf_counter() - began >= config.minutes * 60  # noqa: E731
    while step < config.steps and not (config.stop_when_solved and solved_step is not None) and not out_of_time():
        batch = task.sample(config.batch_size, rng)
        start = time.perf_counter()
        loss = task.loss(model(batch.x), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
        opt.step()
        train_seconds += time.perf_counter() - start
        tokens += batch.tokens
        step += 1
        if step % config.eval_every == 0 or step == config.steps or out_of_time():
            value = evaluate()
            if not math.isfinite(value):
                raise FloatingPointError(f"{cell} seed {seed}: metric is {value} at step {step}")
            curve_steps.append(step)
            curve.append(value)
            if solved_step is None and task.is_solved(value):
                solved_step = step
            if on_eval is not None:
                on_eval(step, value)
    return RunResult(cell=cell, seed=seed, task=task.name, seq_len=task.seq_len, hidden_size=hidden,
                     params=count_parameters(model), metric_name=task.metric_name, chance=task.chance,
                     solved_at=task.solved_at, steps=step, final_metric=curve[-1],
                     steps_to_solve=solved_step, seconds=train_seconds,
                     tokens_per_s=tokens / train_seconds if train_seconds else float("nan"),
                     curve_steps=curve_steps, curve=curve)


def fit(model, task: Task, steps: int, rng: np.random.Generator, batch_size: int = 32, lr: float = 1e-2,
        clip: float = 1.0) -> float:
    """Plain Adam training of ``model`` on ``task`` for ``steps`` batches; returns the last loss."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        batch = task.sample(batch_size, rng)
        loss = task.loss(model(batch.x), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
    return float(loss.detach())


def compare(config: CompareConfig, on_run=None) -> list[RunResult]:
    """Every cell on every seed, in that order; ``on_run(result)`` after each."""
    config.validate()
    task = make_task(config.task, config.seq_len, **config.task_options)
    runs = []
    for cell in config.cells:
        for seed in config.seeds:
            result = train_run(cell, seed, config, task)
            runs.append(result)
            if on_run is not None:
                on_run(result)
    return runs


# -- parameter matching ---------------------------------------------------------------------

@dataclass
class Match:
    cell: str
    hidden_size: int
    params: int
    reference_params: int
    embed_size: int = 0  # language models: 0 is the recurrent output size, else the size matched

    @property
    def deviation(self) -> float:
        return self.params / self.reference_params - 1.0


def match_parameters(cells, reference: str, reference_hidden: int, count, tolerance: float = 0.01,
                     max_hidden: int = 1 << 16) -> dict[str, Match]:
    """For each cell, the largest hidden size whose parameter count is within ``tolerance``
    (relative) of ``reference`` at ``reference_hidden``; ``count(cell, hidden)`` counts.

    Where no hidden size lands within the tolerance (small sizes step coarsely), the closest
    count is taken and its ``deviation`` tells by how much it misses.
    """
    target = count(reference, reference_hidden)
    matches = {}
    for cell in cells:
        if cell == reference:
            matches[cell] = Match(cell, reference_hidden, target, target)
            continue
        # parameter counts grow with the hidden size: find the last size at or below the target
        # plus tolerance by doubling then bisecting
        limit = target * (1 + tolerance)
        lo, hi = 1, 2
        while count(cell, hi) <= limit and hi < max_hidden:
            lo, hi = hi, hi * 2
        if count(cell, lo) > limit:
            matches[cell] = Match(cell, 1, count(cell, 1), target)
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(cell, mid) <= limit else (lo, mid)
        best = lo
        if abs(count(cell, best) / target - 1) > tolerance and abs(count(cell, hi) / target - 1) < abs(count(cell, best) / target - 1):
            best = hi
        matches[cell] = Match(cell, best, count(cell, best), target)
    return matches


# -- reports --------------------------------------------------------------------------------

CSV_COLUMNS = ("cell", "seed", "task", "seq_len", "metric_name", "final_metric", "chance", "solved_at",
               "steps_to_solve", "steps", "seconds", "tokens_per_s", "params", "hidden_size")


def write_csv(runs: list[RunResult], path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in runs:
            writer.writerow(r.row())


def summarise(runs: list[RunResult]) -> list[dict]:
    """Per cell, in order of first appearance: mean and spread of the final metric over seeds,
    how many seeds solved the task and the median steps they took, throughput and size."""
    by_cell: dict[str, list[RunResult]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r)
    rows = []
    for cell, rs in by_cell.items():
        finals = np.array([r.final_metric for r in rs])
        solved = [r.steps_to_solve for r in rs if r.steps_to_solve is not None]
        rows.append({
            "cell": cell, "seeds": len(rs), "params": rs[0].params, "hidden_size": rs[0].hidden_size,
            "mean": float(finals.mean()), "std": float(finals.std(ddof=1)) if len(rs) > 1 else 0.0,
            "min": float(finals.min()), "max": float(finals.max()),
            "solved": len(solved), "median_steps_to_solve": float(np.median(solved)) if solved else None,
            "tokens_per_s": float(np.median([r.tokens_per_s for r in rs])),
            "seconds": float(np.mean([r.seconds for r in rs])),
        })
    return rows


def markdown_table(runs: list[RunResult], title: str = "") -> str:
    first = runs[0]
    threshold = f", solved at {first.solved_at:.3g}" if math.isfinite(first.solved_at) else ""
    one_seed = len({r.seed for r in runs}) == 1
    lines = [f"## {title or first.task}", "",
             f"task `{first.task}`, seq_len {first.seq_len}; metric `{first.metric_name}` "
             f"(chance {first.chance:.3g}{threshold}); "
             f"{f'seed {first.seed}' if one_seed else 'mean ± standard deviation over seeds'}, final evaluation", "",
             f"| cell | params | hidden | {first.metric_name} | min .. max | solved | steps to solve (median) | tokens/s | seconds |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for s in summarise(runs):
        steps = "-" if s["median_steps_to_solve"] is None else f"{s['median_steps_to_solve']:.0f}"
        solved = f"{s['solved']}/{s['seeds']}" if threshold else "-"
        spread = f"{s['mean']:.4g}" if s["seeds"] == 1 else f"{s['mean']:.4g} ± {s['std']:.2g}"
        span = "-" if s["seeds"] == 1 else f"{s['min']:.4g} .. {s['max']:.4g}"
        lines.append(f"| {s['cell']} | {s['params']} | {s['hidden_size']} | {spread} | {span} | {solved} | {steps} | "
                     f"{s['tokens_per_s']:.0f} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_curves(runs: list[RunResult], path, title: str = "") -> None:
    """``curves_figure`` written to ``path``."""
    import matplotlib.pyplot as plt

    fig = curves_figure(runs, title)
    fig.savefig(path)
    plt.close(fig)


def curves_figure(runs: list[RunResult], title: str = ""):
    """One line per cell (mean over seeds), the min..max over seeds shaded, chance dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = runs[0]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    by_cell: dict[str, list[RunResult]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r)
    for cell, rs in by_cell.items():
        # runs stopped early have shorter curves: hold each at its last value
        n = max(len(r.curve) for r in rs)
        longest = max(rs, key=lambda r: len(r.curve)).curve_steps
        values = np.array([r.curve + [r.curve[-1]] * (n - len(r.curve)) for r in rs])
        line, = ax.plot(longest, values.mean(0), label=f"{cell} ({rs[0].params} params)", lw=1.8)
        if len(rs) > 1:
            ax.fill_between(longest, values.min(0), values.max(0), color=line.get_color(), alpha=0.2, lw=0)
    ax.axhline(first.chance, color="grey", ls="--", lw=1, label=f"chance ({first.chance:.3g})")
    if math.isfinite(first.solved_at):
        ax.axhline(first.solved_at, color="grey", ls=":", lw=1, label=f"solved ({first.solved_at:.3g})")
    if first.metric_name == "mse":
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(first.metric_name)
    seeds = sorted({r.seed for r in runs})
    what = f"seed {seeds[0]}" if len(seeds) == 1 else f"mean of {len(seeds)} seeds, range shaded"
    ax.set_title(title or f"{first.task}, seq_len {first.seq_len} ({what})")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_results(runs: list[RunResult], out_dir, title: str = "", preamble: str = "") -> dict[str, Path]:
    """``results.csv``, ``results.md`` and ``curves.png`` under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "results.csv", "md": out / "results.md", "png": out / "curves.png"}
    write_csv(runs, paths["csv"])
    paths["md"].write_text(markdown_table(runs, title) + (f"\n{preamble}" if preamble else ""))
    plot_curves(runs, paths["png"], title)
    return paths


__all__ = ["CompareConfig", "RunResult", "compare", "train_run", "fit", "match_parameters", "Match",
           "parameter_count", "options_for", "build_model", "write_results", "write_csv",
           "markdown_table", "plot_curves", "curves_figure", "summarise", "EVAL_SEED"]
