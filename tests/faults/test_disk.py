"""Writes that fail (a full disk, a read-only mount) never leave a run folder that cannot go on:
the command stops with one line (exit 1, no traceback) saying what the folder still holds, the
lock is released, no temporary file is left, every checkpoint there loads, ``metrics.csv`` holds
whole rows; once there is room again, the run (resumed, or started again if it never saved)
ends with exactly the metrics of a run that never failed.

Two ways to fill a disk: a fake that fails writes to one file of the run at its N-th byte
(``open`` patched; always runs), and a real tmpfs of a few hundred KB (where the test may mount
one: as root on Linux; skipped elsewhere).
"""
from __future__ import annotations

import builtins
import csv
import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from gatedrnn.cli import main
from gatedrnn.training.checkpoint import load_checkpoint
from gatedrnn.training.runlock import LOCK

from .helpers import TINY, corpus_file, metrics

STEPS = 8
ARGS = [*TINY, "--steps", str(STEPS), "--save-every", "2", "--eval-every", "4"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    corpus = corpus_file(root)
    assert main(["train", "--data", str(corpus), *ARGS, "--out", str(root / "reference")]) == 0
    return root, metrics(root / "reference"), (root / "reference" / "latest.pt").stat().st_size


class FailingFile:
    """A file whose writes fail with ENOSPC once ``budget["left"]`` bytes are spent (what fits is written)."""

    def __init__(self, f, budget):
        self._f, self._budget = f, budget

    def write(self, data):
        left = self._budget["left"]
        if len(data) > left:
            if left:
                self._f.write(data[:left])
            self._budget["left"] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), getattr(self._f, "name", None))
        self._budget["left"] -= len(data)
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self._f.close()
        except OSError:
            pass
        return False

    def __iter__(self):
        return iter(self._f)


def fail_writes(monkeypatch, name: str, after: int):
    """Every file opened for writing whose name contains ``name`` shares a budget of ``after`` bytes."""
    real_open = builtins.open
    budget = {"left": after}

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and name in Path(file).name and any(c in mode for c in "wax+"):
            return FailingFile(f, budget)
        return f

    monkeypatch.setattr(builtins, "open", fake_open)


def check_folder_valid(run: Path):
    """What a failed write may leave: nothing half-done, nothing locked."""
    if not run.exists():
        return
    assert not (run / LOCK).exists(), "the lock was left behind"
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name], list(run.iterdir())
    for name in ("latest.pt", "best.pt"):
        if (run / name).exists():
            load_checkpoint(run / name)
    if (run / "metrics.csv").exists():
        with open(run / "metrics.csv", newline="") as f:
            rows = list(csv.reader(f))
        assert all(len(r) == 7 for r in rows), rows  # whole rows only


def failed_in_one_line(capsys, code, name) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("gatedrnn train: error: "), err
    assert name in err, err
    return err


def go_on(root, run, capsys):
    """Room again: resume the run, or start it again if it never saved; it ends as the reference."""
    if (run / "latest.pt").exists():
        assert main(["train", "--resume", str(run)]) == 0
    else:
        assert main(["train", "--data", str(corpus_file(root)), *ARGS, "--out", str(run)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("name,after", [
    ("latest.pt", 1.5),  # the second checkpoint's write fails half-way
    ("metrics.csv", 450),  # a row cut off in the middle
    (LOCK, 0),  # the lock of a new run
    ("run.json", 0),
    ("loss.png", 0),  # the curve drawn at the end
])
def test_a_write_that_fails_leaves_a_run_that_goes_on(reference, monkeypatch, capsys, name, after):
    root, expected, checkpoint_size = reference
    run = root / f"full-{name.strip('.')}-{uuid.uuid4().hex[:6]}"
    after = int(after * checkpoint_size) if isinstance(after, float) else after
    with monkeypatch.context() as m:
        fail_writes(m, name, after)
        code = main(["train", "--data", str(corpus_file(root)), *ARGS, "--out", str(run)])
    line = failed_in_one_line(capsys, code, name)
    check_folder_valid(run)
    if name == "loss.png":  # the last write of a finished run: nothing to resume
        assert f"checkpoint of step {STEPS} is saved" in line, line
    elif (run / "latest.pt").exists():
        assert "resume with: gatedrnn train --resume" in line, line
    go_on(root, run, capsys)
    assert metrics(run) == expected
    assert int(load_checkpoint(run / "latest.pt")["step"]) == STEPS


def test_an_empty_lock_left_behind_is_recovered(reference, capsys):
    """A 0-byte ``.lock`` (what an older version left when the disk was full) blocks nothing."""
    root, expected, _ = reference
    run = root / "empty-lock"
    run.mkdir()
    (run / LOCK).write_bytes(b"")
    os.utime(run / LOCK, (0, 0))  # long ago
    assert main(["train", "--data", str(corpus_file(root)), *ARGS, "--out", str(run)]) == 0
    assert metrics(run) == expected
    capsys.readouterr()
    shutil.copytree(run, root / "empty-lock-2")
    (root / "empty-lock-2" / LOCK).write_bytes(b"")
    os.utime(root / "empty-lock-2" / LOCK, (0, 0))
    assert main(["train", "--resume", str(root / "empty-lock-2"), "--steps", str(STEPS + 1)]) == 0


# -- a real small file system -------------------------------------------------------------------
@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(mnt: Path, leave: int = 0) -> Path:
    """Fill ``mnt`` up to ``leave`` free bytes (0: until a write fails)."""
    filler = mnt / f"filler-{uuid.uuid4().hex[:6]}"
    with open(filler, "wb") as f:
        try:
            while True:
                free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
                if free <= leave:
                    break
                f.write(b"\0" * min(65536, max(1, free - leave)))
                f.flush()
        except OSError:
            pass
    return filler


def test_a_real_disk_that_fills_up(reference, tmpfs, capsys, monkeypatch):
    root, expected, _ = reference
    corpus = corpus_file(root)
    # full from the start: the lock cannot be written; none is left behind
    filler = fill(tmpfs)
    code = main(["train", "--data", str(corpus), *ARGS, "--out", str(tmpfs / "run")])
    failed_in_one_line(capsys, code, "No space left on device")
    check_folder_valid(tmpfs / "run")
    filler.unlink()
    # full after the first checkpoint: the next write fails, the checkpoint stays
    import gatedrnn.training.loop as loop

    real_save, fillers = loop.save_checkpoint, []

    def save_then_fill(path, payload):
        real_save(path, payload)
        if not fillers:
            fillers.append(fill(tmpfs))

    monkeypatch.setattr(loop, "save_checkpoint", save_then_fill)
    code = main(["train", "--data", str(corpus), *ARGS, "--out", str(tmpfs / "run")])
    line = failed_in_one_line(capsys, code, "No space left on device")
    assert "checkpoint of step 2" in line and "resume with" in line, line
    check_folder_valid(tmpfs / "run")
    monkeypatch.undo()
    fillers[0].unlink()
    go_on(root, tmpfs / "run", capsys)
    assert metrics(tmpfs / "run") == expected
    # read-only: a new run cannot be created there, and a resume says why
    assert subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], capture_output=True).returncode == 0
    code = main(["train", "--data", str(corpus), *ARGS, "--out", str(tmpfs / "new")])
    failed_in_one_line(capsys, code, "Read-only file system")
    code = main(["train", "--resume", str(tmpfs / "run"), "--steps", str(STEPS + 2)])
    failed_in_one_line(capsys, code, "Read-only file system")


def test_an_out_folder_on_a_read_only_file_system(reference, capsys, monkeypatch):
    """EROFS where no tmpfs can be mounted: the folder cannot be created; one line, exit 1."""
    root, _, _ = reference

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["train", "--data", str(corpus_file(root)), *ARGS, "--out", str(root / "ro" / "run")])
    line = failed_in_one_line(capsys, code, "Read-only file system")
    assert "cannot create the run folder" in line and "choose another --out" in line, line
