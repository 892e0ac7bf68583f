"""One trainer per run folder.

A trainer holds ``RUN/.lock`` while it writes the folder: created with ``O_EXCL`` (so two trainers
racing for it cannot both win), holding the owner's process id and host. A second trainer, new
or resuming, finds it and stops with a one-line error before writing anything. A lock left by a
trainer that died (``SIGKILL``, a power cut) is stale: on the same host its process no longer
exists (or is a zombie), and the next trainer takes it over. A lock from another host cannot be
checked from here; the error says which file to delete once no trainer runs there.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK = ".lock"


class RunBusyError(ValueError):
    """Another live trainer holds the run folder."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    try:  # a child that exited but was not reaped yet still answers kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """``RUN/.lock`` for the life of a trainer; ``acquire`` raises ``RunBusyError`` if it is held."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK
        self.held = False

    def acquire(self) -> None:
        if self.held:
            return
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        for _ in range(2):  # a second try after removing a stale lock
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._refuse_unless_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunBusyError(f"{self.path.parent} is locked by another trainer that took it at the same moment; "
                           f"try again, or choose another --out")

    def _refuse_unless_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:  # released between our attempt and this read
            return
        except (OSError, ValueError, KeyError, TypeError):
            owner, pid, host = {}, None, None  # a torn or foreign file: only its age can tell
            if time.time() - self.path.stat().st_mtime < 60:
                raise RunBusyError(f"{self.path.parent} is being set up by another trainer ({self.path} is unreadable "
                                   f"and under a minute old); wait, or choose another --out") from None
        if pid is not None and host == socket.gethostname() and _alive(pid):
            raise RunBusyError(f"{self.path.parent} is being written by another trainer (process {pid}, since "
                               f"{owner.get('since', '?')}); wait for it to finish or stop it, or choose another --out")
        if pid is not None and host != socket.gethostname():
            raise RunBusyError(f"{self.path.parent} is locked by a trainer on host {host} (process {pid}); if none runs "
                               f"there any more, delete {self.path} and try again")
        self.path.unlink(missing_ok=True)  # stale: its trainer is gone

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                owner = json.loads(self.path.read_text())
                if owner.get("pid") == os.getpid():
                    self.path.unlink(missing_ok=True)
            except (OSError, ValueError):
                pass
