"""Cells compared as language models: the same corpus, budget and seeds, one run folder each.

    runs = compare_lm(LMCompareConfig(cells=("lstm", "mogrifier"), data="notes.txt"), "out/", on_run=print)

Each (cell, seed) is a full ``Trainer`` run under ``out/runs/<cell>-seed<seed>`` (checkpoints,
``metrics.csv``), so any of them can be sampled, evaluated or inspected afterwards. The curve is
the held-out loss in bits per token, measured before training and at every ``eval_every`` steps;
chance is ``log2(V)``, the uniform guess. The results are ``RunResult`` rows, written by
``compare.write_results`` like the synthetic tasks'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cells import CELLS, make_cell
from ..data import load_corpus
from ..models.lm import LMConfig
from ..training.config import TrainConfig
from ..training.loop import Trainer
from .compare import Match, RunResult, match_parameters, options_for


@dataclass
class LMCompareConfig:
    cells: tuple[str, ...] = ("lstm", "mogrifier")
    data: str = ""  # "" is the built-in corpus
    level: str = ""
    seq_len: int = 100  # BPTT window
    steps: int = 1500
    seeds: tuple[int, ...] = (0,)
    hidden_size: int = 64
    hidden_sizes: dict = field(default_factory=dict)
    #: embedding size per cell (set by parameter matching); absent: ``model_options``'s
    embed_sizes: dict = field(default_factory=dict)
    lr: float = 3e-3
    batch_size: int = 32
    clip: float = 1.0
    eval_every: int = 250
    #: wall-clock budget of each run in minutes (the final evaluation included); 0: none
    minutes: float = 0.0
    cell_options: dict = field(default_factory=dict)
    #: further LMConfig settings (num_layers, sum_layer_outputs, tie_weights, ...), from a recipe
    model_options: dict = field(default_factory=dict)
    #: further TrainConfig settings (beta1, weight_decay, schedule, ...), from a recipe
    train_options: dict = field(default_factory=dict)

    def hidden_size_of(self, cell: str) -> int:
        return self.hidden_sizes.get(cell, self.hidden_size)


def lm_parameter_count(cell: str, vocab_size: int, hidden_size: int, cell_options: dict,
                       num_layers: int = 1, tie_weights: bool = False, embed_size: int = 0) -> int:
    """Parameters of ``LanguageModel`` (embedding, recurrent stack, decoder), from the specs."""
    options = options_for(cell, cell_options)
    cfg = LMConfig(vocab_size=vocab_size, cell=cell, hidden_size=hidden_size, num_layers=num_layers,
                   embed_size=embed_size, cell_options=options)
    c = make_cell(cell, **{k: v for k, v in options.items() if k in CELLS[cell].options})
    decoder = 0 if tie_weights else cfg.output_size * vocab_size  # tied: the embedding's table
    total = vocab_size * cfg.input_size + decoder + vocab_size
    layer_input = cfg.input_size
    for _ in range(num_layers):
        total += sum(math.prod(s.shape) for s in c.param_spec(layer_input, hidden_size))
        layer_input = cfg.output_size
    return total


def match_lm_parameters(cells, reference: str, reference_hidden: int, count, tolerance: float = 0.01,
                        embed_size: int = 0, tie_weights: bool = False) -> dict[str, Match]:
    """``match_parameters`` for language models, where one hidden unit can be more than 1% of a
    small model: ``count(cell, hidden, embed)`` counts, and where no hidden size alone lands within
    ``tolerance``, the hidden sizes around the best one (both ways) are tried with the embedding
    size that brings each closest (tied weights fix the embedding: the hidden size alone then).
    Where nothing lands within the tolerance, the closest is returned: its ``deviation`` says how far."""
    by_hidden = match_parameters(cells, reference, reference_hidden, lambda c, h: count(c, h, embed_size),
                                 tolerance)
    target = by_hidden[reference].params
    matches = {}
    for cell, m in by_hidden.items():
        best = Match(cell, m.hidden_size, m.params, target, embed_size)
        if cell != reference and abs(m.deviation) > tolerance and not tie_weights:
            for hidden in range(max(1, m.hidden_size - 3), m.hidden_size + 4):
                one, two = count(cell, hidden, 1), count(cell, hidden, 2)  # the count is linear in the embedding
                guess = 1 + round((target - one) / (two - one)) if two > one else 1
                for embed in {max(1, guess - 1), max(1, guess), guess + 1}:
                    n = count(cell, hidden, embed)
                    if abs(n / target - 1) < abs(best.deviation):
                        best = Match(cell, hidden, n, target, embed)
        matches[cell] = best
    return matches


def load(config: LMCompareConfig):
    return load_corpus(config.data or None, config.level or None)


def lm_run(cell: str, seed: int, config: LMCompareConfig, corpus, out_dir, on_eval=None) -> RunResult:
    """One language model trained by ``Trainer`` into ``out_dir``; its held-out curve."""
    hidden = config.hidden_size_of(cell)
    cfg = TrainConfig(data=config.data, level=config.level, seq_len=config.seq_len, batch_size=config.batch_size,
                      steps=config.steps, minutes=config.minutes, lr=config.lr, clip=config.clip, seed=seed,
                      eval_every=config.eval_every,
                      save_every=max(config.steps, 1), log_every=min(50, config.eval_every),
                      **{"eval_share": 0.0, "precision": "float32", **config.train_options})
    # every run's curve on one grid of steps, and every cell in one precision
    curve_steps, curve, rates, seconds_at = [], [], [], []

    def callback(event):
        if event.kind == "valid":
            curve_steps.append(event.step)
            curve.append(event.data["loss"] / math.log(2))
            seconds_at.append(float(event.data.get("elapsed", float("nan"))))
            if on_eval is not None:
                on_eval(event.step, curve[-1])
        elif event.kind == "log":
            rates.append(event.data["tokens_per_s"])

    # a comparison's models are what it counted: the embedding the output size and no dropout unless
    # the recipe or the match says otherwise (not the training defaults, which adapt to the budget)
    model_options = {"embed_size": 0, "dropout": 0.0, **config.model_options, "cell": cell, "hidden_size": hidden,
                     "cell_options": options_for(cell, config.cell_options)}
    if cell in config.embed_sizes:
        model_options["embed_size"] = config.embed_sizes[cell]
    trainer = Trainer.new(cfg, model_options, out_dir, corpus=corpus, callback=callback)
    curve_steps.append(0)
    curve.append(trainer.validate()["loss"] / math.log(2))  # the untrained model: where curves start
    seconds_at.append(0.0)
    result = trainer.run()
    V = len(corpus.vocab)
    seconds = float(result["elapsed"])
    return RunResult(cell=cell, seed=seed, task="lm", seq_len=config.seq_len, hidden_size=hidden,
                     params=sum(p.numel() for p in trainer.model.parameters()),
                     metric_name="valid_bits_per_token", chance=math.log2(V), solved_at=float("nan"),
                     steps=int(result["step"]), final_metric=curve[-1], steps_to_solve=None, seconds=seconds,
                     tokens_per_s=float(np.median(rates)) if rates else result["tokens"] / max(seconds, 1e-9),
                     curve_steps=curve_steps, curve=curve, curve_seconds=seconds_at)


def first_reached(run: RunResult, target: float):
    """(step, seconds) of the first evaluation at or under ``target``, or None."""
    seconds = run.curve_seconds or [math.nan] * len(run.curve)
    return next(((s, sec) for s, sec, v in zip(run.curve_steps, seconds, run.curve) if v <= target), None)


def _mean_sd(values, digits: int = 0) -> str:
    """``mean ± sd`` (sample standard deviation; one value: the value alone)."""
    a = np.asarray(values, dtype=float)
    if len(a) == 1:
        return f"{a[0]:.{digits}f}"
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


def default_targets(runs: list[RunResult]) -> list[float]:
    """Four evenly spaced levels from the worst first evaluation after step 0 to the best final
    loss, so every table has some targets that were reached."""
    hi = max(r.curve[1] if len(r.curve) > 1 else r.curve[0] for r in runs)
    lo = min(r.final_metric for r in runs)
    return [round(lo + (hi - lo) * f, 2) for f in (0.75, 0.5, 0.25, 0.0)]


def convergence_table(runs: list[RunResult], targets=None) -> str:
    """Final held-out loss (bits and nats, mean ± standard deviation over seeds) apart from how
    fast each cell got there: for each target, the steps and the training seconds to the first
    evaluation at or under it, mean ± standard deviation over the seeds that reached it, how many
    of the seeds did, and each seed's value ("-" where it never got there)."""
    by_cell: dict[str, list[RunResult]] = {}
    for r in runs:
        by_cell.setdefault(r.cell, []).append(r)
    if targets is None:
        targets = default_targets(runs)
    one_seed = all(len(rs) == 1 for rs in by_cell.values())
    lines = ["## held-out loss and convergence", "",
             "Final: the whole valid split, read as contiguous streams with the state carried across segments; "
             + ("one seed." if one_seed else "mean ± standard deviation over seeds."), "",
             "| cell | params | seeds | steps | seconds | bits/token | nats/token |",
             "|---|---:|---:|---|---|---|---|"]
    for cell, rs in by_cell.items():
        bits = [r.final_metric for r in rs]
        lines.append(f"| {cell} | {rs[0].params} | {len(rs)} | {_mean_sd([r.steps for r in rs])} | "
                     f"{_mean_sd([r.seconds for r in rs])} | {_mean_sd(bits, 4)} | "
                     f"{_mean_sd([b * math.log(2) for b in bits], 4)} |")
    lines += ["", "To a target: the first evaluation at or under it, in steps and training seconds"
              + (", then the seed's steps (seconds)." if one_seed else
                 "; mean ± standard deviation over the seeds that reached it (a seed that never did is counted, not "
                 "averaged), then each seed's steps (seconds), in seed order."), "",
              "| target bits/token | cell | reached | steps | seconds | per seed: steps (seconds) |",
              "|---:|---|---|---|---|---|"]
    for t in targets:
        for cell, rs in by_cell.items():
            hits = [first_reached(r, t) for r in rs]
            got = [h for h in hits if h is not None]
            per_seed = ", ".join(f"{h[0]} ({h[1]:.0f} s)" if h is not None else "-" for h in hits)
            steps = _mean_sd([h[0] for h in got]) if got else "not reached"
            seconds = _mean_sd([h[1] for h in got]) if got else "not reached"
            lines.append(f"| {t:g} | {cell} | {len(got)} of {len(rs)} seed{'s' if len(rs) > 1 else ''} | {steps} | "
                         f"{seconds} | {per_seed} |")
    return "\n".join(lines) + "\n"


def compare_lm(config: LMCompareConfig, out_dir, corpus=None, on_run=None) -> list[RunResult]:
    """Every cell on every seed; run folders under ``out_dir/runs``."""
    for cell in config.cells:
        make_cell(cell)
    corpus = corpus if corpus is not None else load(config)
    runs = []
    for cell in config.cells:
        for seed in config.seeds:
            r = lm_run(cell, seed, config, corpus, Path(out_dir) / "runs" / f"{cell}-seed{seed}")
            runs.append(r)
            if on_run is not None:
                on_run(r)
    return runs


__all__ = ["LMCompareConfig", "compare_lm", "match_lm_parameters", "convergence_table", "default_targets", "first_reached", "lm_run",
           "lm_parameter_count"]
