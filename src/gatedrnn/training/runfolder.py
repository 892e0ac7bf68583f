"""The files of a run folder besides its checkpoints: the check before a new run fills it,
``metrics.csv`` (appended row by row, cut back on resume), and the one line that says what a
failed write left there.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from .checkpoint import BEST, LATEST, atomic_write
from .loading import RunWriteError, describe_os_error
from .runlock import LOCK, RunLock

METRICS_FIELDS = ("step", "tokens", "elapsed_s", "lr", "split", "loss", "bits_per_token")


def check_new_run_folder(out: Path) -> None:
    """A new run never writes into a folder that holds anything."""
    for parent in reversed(out.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"--out {out}: {parent} is a file, not a folder (expected a new or empty folder for the "
                             f"run); choose another --out")
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"--out {out} is a file (expected a new or empty folder for the run)")
        if (out / LATEST).exists() or (out / BEST).exists():
            raise ValueError(f"{out} already holds a run ({LATEST}); add --resume to continue it, or choose another --out")
        if [p.name for p in out.iterdir()] == [LOCK]:
            # a trainer that died setting the folder up (a full disk, a kill) left only its lock:
            # stale, it is removed; a live trainer's lock stops us here (RunBusyError)
            RunLock(out).clear_if_stale()
        if any(out.iterdir()):
            raise ValueError(f"{out} is not empty (expected a new or empty folder for the run); choose another --out")


def truncate_metrics(path: Path, step: int) -> float | None:
    """Drop the rows of ``metrics.csv`` after ``step`` (and a row cut short by a kill during its
    write); returns the validation loss the file holds for ``step`` itself, if any."""
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if None not in r.values() and r["step"].isdigit() and int(r["step"]) <= step]
    buf = io.StringIO()
    w = csv.DictWriter(buf, METRICS_FIELDS)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(buf.getvalue().encode()))
    return next((float(r["loss"]) for r in rows if r["split"] == "valid" and int(r["step"]) == step), None)


def append_metrics_row(path: Path, row: list) -> None:
    """One row of ``metrics.csv`` (the header first in a new file). A write that fails (a full
    disk) is taken back, so the file always ends with whole rows, and the ``OSError`` raised."""
    new = not path.exists()
    buf = io.StringIO()
    w = csv.writer(buf)
    if new:
        w.writerow(METRICS_FIELDS)
    w.writerow(row)
    size = 0 if new else path.stat().st_size
    try:
        with open(path, "a", newline="") as f:
            f.write(buf.getvalue())
    except OSError:
        try:
            if new:
                path.unlink(missing_ok=True)
            else:
                os.truncate(path, size)
        except OSError:
            pass  # a resume drops a cut-off row anyway (truncate_metrics)
        raise


def write_failure(out: Path, step: int, saved_step: int, err: OSError) -> RunWriteError:
    """One line: what failed, what the run folder still holds, how to go on."""
    if saved_step > 0 or (out / LATEST).is_file():
        at = saved_step if saved_step > 0 else "the last one saved"
        kept = (f"the run folder is intact, with its checkpoint of step {at} ({out / LATEST}); free some space, "
                f"then resume with: gatedrnn train --resume {out}")
    else:
        kept = "no checkpoint was saved yet; free some space and start the run again"
    return RunWriteError(f"could not write to the run folder at step {step}: {describe_os_error(err)}; {kept}")
