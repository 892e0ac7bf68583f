"""What the fault-injection tests share: a tiny corpus and model, the uninterrupted twin of each
run, and ``python -m gatedrnn`` children whose output is read as it comes."""
from __future__ import annotations

import csv
import multiprocessing.connection
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import gatedrnn

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog {i * 7 % 13}.\n" for i in range(120))
TINY = ["--cell", "lstm", "--hidden-size", "16", "--seq-len", "8", "--batch-size", "4", "--device", "cpu",
        "--seed", "5", "--warmup", "2", "--log-every", "1", "--eval-streams", "2", "--sample-length", "0"]
SRC = str(Path(gatedrnn.__file__).resolve().parents[1])
#: the children import this checkout's gatedrnn, on one thread (the same reductions, the same bits)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH", "")]))}
STEP_LINE = re.compile(r"^step\s+(\d+)/")


def corpus_file(root: Path) -> Path:
    path = root / "corpus.txt"
    if not path.exists():
        path.write_text(TEXT, encoding="utf-8")
    return path


def metrics(run: Path) -> list[tuple]:
    """Every row of ``metrics.csv`` but the clock: (step, tokens, lr, split, loss) as written."""
    with open(run / "metrics.csv", newline="") as f:
        return [(r["step"], r["tokens"], r["lr"], r["split"], r["loss"]) for r in csv.DictReader(f)]


def gatedrnn_cmd(*argv) -> list[str]:
    return [sys.executable, "-m", "gatedrnn", *argv]


class Child:
    """``python -m gatedrnn train ...``, stdout and stderr merged and read line by line."""

    def __init__(self, argv, cwd, **popen):
        self.proc = subprocess.Popen(gatedrnn_cmd("train", *argv), cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, **popen)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.last_step = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _take(self, line):
        self.seen.append(line)
        m = STEP_LINE.match(line)
        if m:
            self.last_step = int(m.group(1))

    def wait_for_step(self, step: int, timeout: float = 120.0) -> bool:
        """Block until the child reports ``step`` (True) or ends first (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                return False
            self._take(line)
            if self.last_step >= step:
                return True
        raise AssertionError(f"no step {step} within {timeout:.0f} s; output so far:\n" + "\n".join(self.seen))

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        code = self.proc.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10.0)) is not None:
            self._take(line)
        return code, "\n".join(self.seen)


# -- children forked from a server that imported torch once ----------------------------------
# A fresh `python -m gatedrnn` spends seconds importing torch (tens of seconds on a loaded
# machine); the tests that start many children (twenty kills in a row) fork them from a
# multiprocessing fork server that imported gatedrnn and torch once. Each child is still a
# process of its own: its own pid, signals, exit status, and stdout/stderr on a file or FIFO.
_SERVER = None
PRELOAD = ["torch", "gatedrnn.cli", "gatedrnn.cli.train", "gatedrnn.cli.eval", "gatedrnn.cli.sample",
           "gatedrnn.training"]


def fork_server():
    global _SERVER
    if _SERVER is None:
        import multiprocessing

        os.environ["OMP_NUM_THREADS"] = "1"  # the server and its children: one thread, as ENV
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        _SERVER = ctx
    return _SERVER


def _child(argv, out_path, err_path, cwd, setup=None):
    os.chdir(cwd)
    out = os.open(out_path, os.O_WRONLY | (0 if Path(out_path).is_fifo() else os.O_CREAT | os.O_APPEND), 0o644)
    os.dup2(out, 1)
    if err_path is None:
        os.dup2(out, 2)
    else:
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
    import torch

    from gatedrnn.cli import main

    torch.set_num_threads(1)
    if setup is not None:  # (function, argument): a fault planted in the child before it runs
        setup[0](setup[1])
    sys.exit(main(argv))


class ForkedChild(Child):
    """``gatedrnn <argv>`` (the command first) in a forked child; its stdout and stderr go to ``log`` (or ``out``/``err``
    apart), read line by line like ``Child``'s. ``proc`` has ``pid``, ``send_signal`` and ``wait``."""

    def __init__(self, argv, cwd, log: Path, *, out: Path | None = None, err: Path | None = None, setup=None):
        self.log = Path(log)
        out_path = out or self.log
        if not Path(out_path).is_fifo():
            Path(out_path).write_text("")
        self.process = fork_server().Process(target=_child, args=(list(argv), str(out_path),
                                                                  str(err) if err else None, str(cwd), setup))
        self.process.start()
        self.proc = self
        self.pid = self.process.pid
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.last_step = 0
        if out is None or err is None:
            threading.Thread(target=self._tail, daemon=True).start()
        else:
            self.lines.put(None)

    def send_signal(self, signum):
        os.kill(self.pid, signum)

    def wait(self, timeout=None):
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired("gatedrnn (forked)", timeout)
        return self.process.exitcode

    def ended(self) -> bool:
        """Whether the child has ended, without taking its exit status. The fork server sends the
        status once, on the sentinel; a second reader finds the pipe closed and multiprocessing then
        reports 255, so only ``wait`` (on the test's thread) reads it and this thread only looks."""
        return self.process.sentinel in multiprocessing.connection.wait([self.process.sentinel], 0)

    def _tail(self):
        with open(self.log) as f:
            partial = ""
            while True:
                chunk = f.readline()
                if chunk:
                    partial += chunk
                    if partial.endswith("\n"):
                        self.lines.put(partial.rstrip("\n"))
                        partial = ""
                    continue
                if self.ended():
                    rest = f.read()
                    for line in (partial + rest).splitlines():
                        self.lines.put(line)
                    break
                time.sleep(0.005)
        self.lines.put(None)
