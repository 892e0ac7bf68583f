"""One trainer per run folder.

A trainer holds ``RUN/.lock`` while it writes the folder, holding the owner's process id and host.
The lock is written whole to a temporary file first and then hard-linked to ``.lock`` (``link``
fails if the name exists: two trainers racing for it cannot both win), so a lock is never seen
half-written and a full disk leaves no lock behind; on a file system without hard links it is
created with ``O_EXCL`` and written in place. A second trainer, new
or resuming, finds it and stops with a one-line error before writing anything. A lock left by a
trainer that died (``SIGKILL``, a power cut) is stale: on the same host its process no longer
exists (or is a zombie), and the next trainer takes it over. So is an empty or unreadable lock a
few seconds old (an older version's trainer cut off between creating and writing it). A lock from another host cannot be
checked from here; the error says which file to delete once no trainer runs there.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

LOCK = ".lock"
#: an unreadable lock younger than this may be another trainer's, being written in place
SETUP_SECONDS = 5.0


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
        text = json.dumps(me)
        for _ in range(2):  # a second try after removing a stale lock
            try:
                self._create(text)
            except FileExistsError:
                self._refuse_unless_stale()
                continue
            self.held = True
            return
        raise RunBusyError(f"{self.path.parent} is locked by another trainer that took it at the same moment; "
                           f"try again, or choose another --out")

    def _create(self, text: str) -> None:
        """``.lock`` holding ``text``, or ``FileExistsError``; nothing is left behind on failure."""
        tmp = self.path.with_name(f"{LOCK}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
            try:
                os.link(tmp, self.path)
                return
            except FileExistsError:
                raise
            except OSError:  # no hard links here: O_EXCL, written in place
                pass
        finally:
            tmp.unlink(missing_ok=True)
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise

    def clear_if_stale(self) -> bool:
        """Remove a stale lock (True); ``RunBusyError`` if a live trainer holds it; False if none."""
        if not self.path.exists():
            return False
        self._refuse_unless_stale()
        return True

    def _refuse_unless_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:  # released between our attempt and this read
            return
        except (OSError, ValueError, KeyError, TypeError):
            # empty, torn or foreign: this version never leaves one (see above), so only an older
            # trainer writing it in place this very moment could; past a few seconds it is stale
            owner, pid, host = {}, None, None
            try:
                age = time.time() - self.path.stat().st_mtime
            except FileNotFoundError:
                return
            if age < SETUP_SECONDS:
                raise RunBusyError(f"{self.path.parent} is being set up by another trainer ({self.path} is unreadable "
                                   f"and {age:.0f} s old); wait a moment, or choose another --out") from None
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
