"""One trainer per run folder (training/runlock.py): a second one is refused while the first
lives, a dead trainer's lock is taken over, and a trainer releases the folder when it is done."""
import json
import os
import socket
import subprocess
import sys

import pytest

from gatedrnn.training import TrainConfig, Trainer
from gatedrnn.training.runlock import LOCK, RunBusyError, RunLock

from .lm_helpers import MODEL, TRAIN, corpus_file, one_thread  # noqa: F401


def write_lock(folder, pid, host=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "then"}))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    return proc.pid


def test_a_second_lock_on_the_same_folder_is_refused(tmp_path):
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    with pytest.raises(RunBusyError, match=f"another trainer \\(process {os.getpid()}"):
        second.acquire()
    first.release()
    assert not (tmp_path / LOCK).exists()
    second.acquire()  # free again
    second.release()
    second.release()  # releasing twice does nothing


def test_a_dead_trainers_lock_is_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid())
    lock = RunLock(tmp_path)
    lock.acquire()
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_from_another_host_names_the_file_to_delete(tmp_path):
    write_lock(tmp_path, os.getpid(), host="elsewhere.invalid")
    with pytest.raises(RunBusyError, match=f"host elsewhere.invalid .*delete {tmp_path / LOCK}"):
        RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK).exists()  # not ours to remove


def test_a_fresh_unreadable_lock_is_respected(tmp_path):
    (tmp_path / LOCK).write_text("{")  # a trainer between creating the file and writing it
    with pytest.raises(RunBusyError, match="being set up"):
        RunLock(tmp_path).acquire()


def test_trainers_hold_the_folder_until_their_run_returns(tmp_path):
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), steps=2, **TRAIN)
    first = Trainer.new(cfg, MODEL, tmp_path / "run")
    assert (tmp_path / "run" / LOCK).exists()
    first.run()
    assert not (tmp_path / "run" / LOCK).exists()  # released when the run returned
    second = Trainer.resume(tmp_path / "run", {"steps": 4})
    with pytest.raises(RunBusyError, match="another trainer"):
        Trainer.resume(tmp_path / "run", {"steps": 6})
    assert second.run()["step"] == 4


def test_a_killed_trainers_run_resumes(tmp_path):
    cfg = TrainConfig(data=str(corpus_file(tmp_path)), steps=2, **TRAIN)
    Trainer.new(cfg, MODEL, tmp_path / "run").run()
    write_lock(tmp_path / "run", dead_pid())  # what a SIGKILL in the middle of a run leaves
    assert Trainer.resume(tmp_path / "run", {"steps": 3}).run()["step"] == 3
