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
from .compare import RunResult, options_for
from .config import TrainConfig
from .loop import Trainer


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
    lr: float = 3e-3
    batch_size: int = 32
    clip: float = 1.0
    eval_every: int = 250
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


def load(config: LMCompareConfig):
    return load_corpus(config.data or None, config.level or None)


def lm_run(cell: str, seed: int, config: LMCompareConfig, corpus, out_dir, on_eval=None) -> RunResult:
    """One language model trained by ``Trainer`` into ``out_dir``; its held-out curve."""
    hidden = config.hidden_size_of(cell)
    cfg = TrainConfig(data=config.data, level=config.level, seq_len=config.seq_len, batch_size=config.batch_size,
                      steps=config.steps, lr=config.lr, clip=config.clip, seed=seed, eval_every=config.eval_every,
                      save_every=max(config.steps, 1), log_every=min(50, config.eval_every),
                      **config.train_options)
    curve_steps, curve, rates = [], [], []

    def callback(event):
        if event.kind == "valid":
            curve_steps.append(event.step)
            curve.append(event.data["loss"] / math.log(2))
            if on_eval is not None:
                on_eval(event.step, curve[-1])
        elif event.kind == "log":
            rates.append(event.data["tokens_per_s"])

    model_options = {**config.model_options, "cell": cell, "hidden_size": hidden,
                     "cell_options": options_for(cell, config.cell_options)}
    trainer = Trainer.new(cfg, model_options, out_dir, corpus=corpus, callback=callback)
    curve_steps.append(0)
    curve.append(trainer.validate()["loss"] / math.log(2))  # the untrained model: where curves start
    result = trainer.run()
    V = len(corpus.vocab)
    seconds = float(result["elapsed"])
    return RunResult(cell=cell, seed=seed, task="lm", seq_len=config.seq_len, hidden_size=hidden,
                     params=sum(p.numel() for p in trainer.model.parameters()),
                     metric_name="valid_bits_per_token", chance=math.log2(V), solved_at=float("nan"),
                     steps=int(result["step"]), final_metric=curve[-1], steps_to_solve=None, seconds=seconds,
                     tokens_per_s=float(np.median(rates)) if rates else result["tokens"] / max(seconds, 1e-9),
                     curve_steps=curve_steps, curve=curve)


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


__all__ = ["LMCompareConfig", "compare_lm", "lm_run", "lm_parameter_count"]
