"""Synthetic long-range-dependency tasks with known chance baselines.

``TASKS`` maps a name to a task class; ``make_task(name, seq_len=None, **options)`` builds one.
A task draws seeded batches and says how to score a model's output on them:

    task = make_task("adding", seq_len=50)
    batch = task.sample(32, rng)            # rng: numpy Generator; batch.x (T, B, I)
    out = model(batch.x)                    # (B, O) when task.readout == "last", else (T, B, O)
    loss = task.loss(out, batch)            # what to minimise
    value = task.metric(out, batch)         # what to report, a float
    task.is_solved(value)                   # value beyond task.solved_at

``chance`` is the metric of the best predictor that ignores the long-range dependency (for the
adding problem, always predicting the mean sum 1.0), so a curve that stays at ``chance`` has
learnt nothing that needs memory.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Batch:
    """``x`` ``(T, B, I)``; ``y`` the target (shape per task); ``mask`` ``(T, B)`` or ``None``."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None

    @property
    def tokens(self) -> int:
        """Input steps in the batch, padding excluded (for throughput)."""
        return int(self.mask.sum()) if self.mask is not None else self.x.shape[0] * self.x.shape[1]


class Task:
    """Base class. Subclasses set the class attributes and ``sample``, ``loss``, ``metric``."""

    name: str = ""
    metric_name: str = ""
    #: "last": the model's output at the last step (B, O) is scored; "all": every step (T, B, O)
    readout: str = "last"
    higher_is_better: bool = False
    default_seq_len: int = 50
    #: option name -> default, besides seq_len
    options: dict = {}

    def __init__(self, seq_len: int | None = None, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"task {self.name!r} got unknown option(s) {unknown}; expected some of {sorted(self.options)}")
        seq_len = self.default_seq_len if seq_len is None else seq_len
        if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < self.min_seq_len:
            raise ValueError(f"task {self.name!r} needs an integer seq_len >= {self.min_seq_len}, got {seq_len!r}")
        self.seq_len = seq_len
        self.config = {**self.options, **options}
        for key, value in self.config.items():
            setattr(self, key, value)

    min_seq_len = 2
    input_size: int = 0
    output_size: int = 0

    @property
    def chance(self) -> float:
        raise NotImplementedError

    @property
    def solved_at(self) -> float:
        raise NotImplementedError

    def is_solved(self, value: float) -> bool:
        return value >= self.solved_at if self.higher_is_better else value <= self.solved_at

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        raise NotImplementedError

    def loss(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metric(self, out: torch.Tensor, batch: Batch) -> float:
        raise NotImplementedError

    def describe(self) -> str:
        extra = "".join(f", {k}={v}" for k, v in self.config.items())
        return f"{self.name} (seq_len={self.seq_len}{extra})"


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


class Adding(Task):
    """The adding problem (Hochreiter and Schmidhuber 1997, in the form of Le et al. 2015).

    Channel 0 holds values uniform in [0, 1], channel 1 marks two steps with 1: one in the first
    half of the sequence, one in the second. The target, read at the last step, is the sum of the
    two marked values. Predicting the mean sum 1.0 scores the variance of a sum of two uniforms,
    2/12 = 0.167: that is chance.
    """

    name = "adding"
    metric_name = "mse"
    input_size, output_size = 2, 1
    default_seq_len = 50
    #: the metric below which the task counts as solved: 30% of chance, as in the LSTM literature's
    #: "error below 0.05" for this form of the task
    solved_mse = 0.05

    @property
    def chance(self):
        return 1.0 / 6.0

    @property
    def solved_at(self):
        return self.solved_mse

    def sample(self, batch_size, rng):
        T, B = self.seq_len, batch_size
        values = rng.random((T, B))
        half = T // 2
        first = rng.integers(0, half, B)
        second = rng.integers(half, T, B)
        marks = np.zeros((T, B))
        cols = np.arange(B)
        marks[first, cols] = 1.0
        marks[second, cols] = 1.0
        target = values[first, cols] + values[second, cols]  # (B,)
        return Batch(_tensor(np.stack([values, marks], -1)), _tensor(target[:, None]))

    def loss(self, out, batch):
        return F.mse_loss(out, batch.y)

    def metric(self, out, batch):
        return float(F.mse_loss(out.detach(), batch.y))


class Copy(Task):
    """The copy (memory) task (Hochreiter and Schmidhuber 1997; Arjovsky et al. 2016).

    ``length`` symbols drawn from ``symbols`` categories, then ``seq_len`` blank steps (the lag)
    whose last is a delimiter, then ``length`` blanks during which the model must emit the
    symbols in order. Input and target are one-hot over ``symbols + 2`` classes (0 blank,
    ``symbols + 1`` delimiter). The loss is cross-entropy at every step; the metric is accuracy
    on the recalled symbols, whose chance is ``1 / symbols``.
    """

    name = "copy"
    metric_name = "recall_accuracy"
    readout = "all"
    higher_is_better = True
    default_seq_len = 20
    min_seq_len = 1
    options = {"symbols": 8, "length": 10}

    @property
    def input_size(self):
        return self.symbols + 2

    output_size = input_size  # one-hot in, logits over the same classes out

    @property
    def chance(self):
        return 1.0 / self.symbols

    @property
    def solved_at(self):
        return 0.95

    def sample(self, batch_size, rng):
        K, lag, B = self.length, self.seq_len, batch_size
        T = 2 * K + lag
        seq = rng.integers(1, self.symbols + 1, (K, B))
        inputs = np.zeros((T, B), dtype=np.int64)
        inputs[:K] = seq
        inputs[K + lag - 1] = self.symbols + 1  # the delimiter: recall starts now
        target = np.zeros((T, B), dtype=np.int64)
        target[K + lag:] = seq
        x = F.one_hot(torch.from_numpy(inputs), self.symbols + 2).float()  # (T, B, C)
        mask = torch.zeros(T, B)
        mask[K + lag:] = 1.0  # where the metric looks
        return Batch(x, torch.from_numpy(target), mask)

    def loss(self, out, batch):
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), batch.y.reshape(-1))

    def metric(self, out, batch):
        hit = (out.detach().argmax(-1) == batch.y).float()
        return float((hit * batch.mask).sum() / batch.mask.sum())



#: the embedded Reber grammar: state -> [(symbol, next state)], chosen with equal probability
#: except that the two self-loops take ``loop`` (Fahlman 1991; Hochreiter and Schmidhuber 1997)
REBER_SYMBOLS = "BTPSXVE"
_REBER = {1: [("T", 2), ("P", 3)], 2: [("S", 2), ("X", 4)], 3: [("T", 3), ("V", 5)],
          4: [("X", 3), ("S", 6)], 5: [("P", 4), ("V", 6)]}
_LOOPS = {2: "S", 3: "T"}


def _reber_expected_length(loop: float) -> float:
    """Expected length of an inner Reber string ``B ... E`` when each self-loop has prob ``loop``."""
    # E[s] = 1 + sum_p p * E[next] over the transient states 1..5, E[6] = 0 (then E is emitted)
    idx = {s: i for i, s in enumerate(_REBER)}
    A, b = np.eye(len(idx)), np.ones(len(idx))
    for s, edges in _REBER.items():
        for sym, nxt in edges:
            p = (loop if _LOOPS.get(s) == sym else 1.0 - loop) if s in _LOOPS else 0.5
            if nxt in idx:
                A[idx[s], idx[nxt]] -= p
    return float(np.linalg.solve(A, b)[0]) + 2  # + the B and the E


class Reber(Task):
    """The embedded Reber grammar (Fahlman 1991; Hochreiter and Schmidhuber 1997).

    Strings ``B T <Reber> T E`` or ``B P <Reber> P E``: the symbol before the final ``E`` repeats
    the second, across the whole inner string. Input is the one-hot current symbol, the target
    the set of symbols legal next (a multi-hot vector; binary cross-entropy). The metric is the
    fraction of strings whose every legal-next set is predicted exactly (outputs above 0.5). A
    model that knows the inner grammar but forgot the second symbol guesses the penultimate one:
    chance is 0.5. ``seq_len`` sets the mean string length by raising the probability of the
    grammar's two self-loops; strings are capped at twice that and padded (``mask``).
    """

    name = "reber"
    metric_name = "string_accuracy"
    readout = "all"
    higher_is_better = True
    default_seq_len = 20
    min_seq_len = 9
    input_size = output_size = len(REBER_SYMBOLS)

    @property
    def chance(self):
        return 0.5

    @property
    def solved_at(self):
        return 0.95

    def _loop_probability(self) -> float:
        inner = self.seq_len - 4  # the embedding adds B, T|P, T|P, E
        if _reber_expected_length(0.5) >= inner:
            return 0.5
        lo, hi = 0.5, 0.9999
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _reber_expected_length(mid) < inner else (lo, mid)
        return 0.5 * (lo + hi)

    def _string(self, rng, loop):
        outer = "TP"[rng.integers(2)]
        inner, s = ["B"], 1
        while s != 6:
            edges = _REBER[s]
            if s in _LOOPS:
                k = 0 if rng.random() < loop else 1  # the loop is always the first edge
            else:
                k = rng.integers(2)
            sym, s = edges[k]
            inner.append(sym)
        inner.append("E")
        return ["B", outer, *inner, outer, "E"]

    @staticmethod
    def _legal_next(string):
        """Multi-hot of the symbols legal after each prefix, from the grammar."""
        legal = []
        outer = string[1]
        s = None
        for t, sym in enumerate(string[:-1]):
            if t == 0:
                nxt = "TP"
            elif t == 1:
                nxt = "B"
            elif t == len(string) - 3:  # the inner E: the outer symbol must come back
                nxt = outer
            elif t == len(string) - 2:
                nxt = "E"
            else:
                s = 1 if sym == "B" else dict(_REBER[s])[sym]
                nxt = "".join(e for e, _ in _REBER[s]) if s in _REBER else "E"
            legal.append([1.0 if c in nxt else 0.0 for c in REBER_SYMBOLS])
        return legal

    def sample(self, batch_size, rng):
        loop, cap = self._loop_probability(), 2 * self.seq_len
        strings = []
        while len(strings) < batch_size:
            s = self._string(rng, loop)
            if len(s) <= cap:
                strings.append(s)
        T = max(len(s) for s in strings) - 1  # inputs are all but the final E
        x = np.zeros((T, batch_size, self.input_size))
        y = np.zeros((T, batch_size, self.output_size))
        mask = np.zeros((T, batch_size))
        for b, s in enumerate(strings):
            n = len(s) - 1
            x[np.arange(n), b, [REBER_SYMBOLS.index(c) for c in s[:-1]]] = 1.0
            y[:n, b] = self._legal_next(s)
            mask[:n, b] = 1.0
        return Batch(_tensor(x), _tensor(y), _tensor(mask))

    def loss(self, out, batch):
        per = F.binary_cross_entropy_with_logits(out, batch.y, reduction="none").sum(-1)  # (T, B)
        return (per * batch.mask).sum() / batch.mask.sum()

    def metric(self, out, batch):
        wrong = ((out.detach() > 0).float() != batch.y).any(-1).float() * batch.mask  # (T, B)
        return float((wrong.sum(0) == 0).float().mean())


class Regression(Task):
    """Sequence regression with a squared error on the output: a delay line.

    Inputs are uniform in [-1, 1]; the target at step ``t`` is the input ``seq_len`` steps
    earlier, scored on the ``window`` steps after the lag (the sequence is ``seq_len + window``
    long). The model must carry ``window`` real values across ``seq_len`` steps of distracting
    input. Predicting 0 scores the input's variance, 1/3: that is chance.
    """

    name = "regression"
    metric_name = "mse"
    readout = "all"
    default_seq_len = 10
    min_seq_len = 1
    options = {"window": 5}

    input_size = output_size = 1

    @property
    def chance(self):
        return 1.0 / 3.0

    @property
    def solved_at(self):
        return 0.1 * self.chance

    def sample(self, batch_size, rng):
        lag, T = self.seq_len, self.seq_len + self.window
        x = rng.uniform(-1.0, 1.0, (T, batch_size, 1))
        y = np.zeros_like(x)
        y[lag:] = x[: T - lag]
        mask = np.zeros((T, batch_size))
        mask[lag:] = 1.0
        return Batch(_tensor(x), _tensor(y), _tensor(mask))

    def _mse(self, out, batch):
        return ((out - batch.y).pow(2).squeeze(-1) * batch.mask).sum() / batch.mask.sum()

    def loss(self, out, batch):
        return self._mse(out, batch)

    def metric(self, out, batch):
        return float(self._mse(out.detach(), batch))


TASKS: dict[str, type[Task]] = {t.name: t for t in (Adding, Copy, Reber, Regression)}


def make_task(name: str, seq_len: int | None = None, **options) -> Task:
    """A configured task from its name; unknown names fail with the close ones suggested."""
    if name not in TASKS:
        close = difflib.get_close_matches(str(name), list(TASKS), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}{hint}")
    return TASKS[name](seq_len, **options)


__all__ = ["TASKS", "Task", "Batch", "make_task", "Adding", "Copy", "Reber", "Regression", "REBER_SYMBOLS"]
