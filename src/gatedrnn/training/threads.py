"""How many CPU threads a training run uses, chosen by timing its own steps.

On an idle 2-core machine two threads trained 1.76x as many steps as one (issue 23); on a machine
whose cores other jobs kept busy, two threads ran 8-25x slower than one under OpenMP's default,
spinning wait policy (benchmarks/RESULTS.md, "Threads and the first hour"). No fixed count is
right on both, and the load changes while a run goes on, so ``ThreadChooser`` times a few of the
run's own steps at each candidate count, keeps the fastest, and looks again every minute, or at
once when the steps at the count chosen slow down by half (another job took a core):

    trainer.callback = ThreadChooser(trainer.callback)      # wraps the events the trainer sends
    trainer.run()

It changes only ``torch.set_num_threads``: the weights and the data are untouched, but a step
computed with another thread count may differ in the last bits, so a run meant to be reproducible
bit for bit keeps one fixed count.
"""
from __future__ import annotations

import os
import statistics
import time

import torch


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), shared among the processes that
    ``torchrun`` started on this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)))


class ThreadChooser:
    """A trainer callback that sets the thread count to the fastest of ``candidates``, by timing.

    ``callback`` receives every event as before, plus ``Event("threads", step, {"threads": n,
    "seconds_per_step": {count: median}})`` when the choice is made or changes. A probe times
    ``window`` steps at each candidate (the first step after a switch is not counted, nor the time
    of a validation or checkpoint), and stops timing a candidate early once it has taken
    twice as long as the best one's whole window; probes repeat every ``every_s`` seconds, and
    sooner when the median of the last ``window`` steps is ``slower`` times the chosen count's
    median in its probe. ``candidates`` defaults to ``(1, available_cores())``.
    """

    def __init__(self, callback=None, candidates=None, window: int = 5, every_s: float = 60.0,
                 slower: float = 1.5, set_threads=torch.set_num_threads, clock=time.monotonic):
        self.callback = callback or (lambda event: None)
        self.candidates = sorted(set(candidates or (1, available_cores())))
        if self.candidates[0] < 1:
            raise ValueError(f"thread counts must be positive, got {self.candidates}")
        if window < 1 or every_s <= 0:
            raise ValueError(f"window must be positive and every_s positive, got {window} and {every_s}")
        if slower <= 1:
            raise ValueError(f"slower must be above 1, got {slower}")
        self.window, self.every_s, self.slower = window, every_s, slower
        self.set_threads, self.clock = set_threads, clock
        self.current = self.candidates[0]
        self.chosen = None  # the count the last probe chose
        self.last = None  # when the previous step ended (None: the next interval is not a clean step)
        self.queue: list[int] = []
        self.times: dict[int, list[float]] = {}
        self.expected = None  # seconds per step of the chosen count in its probe
        self.recent: list[float] = []  # the last steps at the chosen count, since its probe
        self.skip = 2  # the run's first steps allocate and warm up: not counted
        self.next_probe = None  # None: probe at the first step
        self.set_threads(self.current)

    def __call__(self, event) -> None:
        if event.kind == "step":
            self._step(event.step)
        elif event.kind != "log":  # a validation or checkpoint is not part of the next step's time
            self.last = None  # (a progress line is: it costs little, and comes every log_every steps)
        self.callback(event)

    # -- the probe ----------------------------------------------------------------------
    def _switch(self, threads: int) -> None:
        if threads != self.current:
            self.set_threads(threads)
            self.current = threads
            self.skip = max(self.skip, 1)  # the first step at a new count starts the threads

    def _step(self, step: int) -> None:
        now = self.clock()
        dt = None if self.last is None else now - self.last
        self.last = now
        if not self.queue:
            if dt is not None and self.expected is not None:
                self.recent = (self.recent + [dt])[-self.window:]
            slowed = (len(self.recent) == self.window
                      and statistics.median(self.recent) > self.slower * self.expected)
            if self.next_probe is None or now >= self.next_probe or slowed:
                # the count in use is timed first: no switch, and its figure bounds the others
                self.queue = [self.current] + [c for c in self.candidates if c != self.current]
                self.times = {c: [] for c in self.candidates}
            return
        if self.skip:
            self.skip -= 1
            return
        if dt is None:
            return
        candidate = self.queue[0]
        self.times[candidate].append(dt)
        timed = self.times[candidate]
        done = [sum(v) / len(v) for c, v in self.times.items() if c != candidate and len(v) >= self.window]
        too_slow = done and sum(timed) > 2 * self.window * min(done)
        if len(timed) >= self.window or too_slow:
            self.queue.pop(0)
            if self.queue:
                self._switch(self.queue[0])
            else:
                self._choose(step, now)

    def _choose(self, step: int, now: float) -> None:
        medians = {c: statistics.median(v) for c, v in self.times.items() if v}
        best = min(medians, key=medians.get)
        self._switch(best)
        self.skip = 0  # the count chosen runs on: its next step is a normal one
        self.next_probe = now + self.every_s
        self.expected, self.recent = medians[best], []
        if best != self.chosen:
            self.chosen = best
            from .loop import Event

            self.callback(Event("threads", step, {"threads": best, "seconds_per_step": medians}))
