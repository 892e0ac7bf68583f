"""Checkpoints that are written atomically and loaded without running code from the file.

A checkpoint is a ``dict`` of tensors and plain types (numbers, strings, lists, dicts), written
with ``torch.save`` to a temporary file in the same folder, flushed and fsynced, then renamed over
the old one (``os.replace`` is atomic on POSIX and Windows), and the folder fsynced, so a crash at
any moment leaves either the old file or the new one. Loading uses ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers: a checkpoint cannot execute code.
"""
from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

FORMAT = "gatedrnn-checkpoint"
VERSION = 1
LATEST, BEST = "latest.pt", "best.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit: one line for the user.

    Raised for an empty, truncated, corrupted (digest mismatch) or foreign file, an unknown
    format version, and weights that do not fit the model config saved with them. A
    ``ValueError``, so ``except ValueError`` catches it with other bad input.
    """


def os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``, if any: ``torch.save`` reports a full disk as a
    ``RuntimeError`` ("unexpected pos") chained to the ``OSError`` that caused it."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file, then move it to ``path`` in one step.

    If anything fails, the temporary file is removed and ``path`` is untouched; a failure of the
    file system (a full disk, a read-only mount, no permission) is raised as an ``OSError`` naming
    ``path``, whatever layer (``torch.save``, ``savefig``) it came through.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        cause = os_error_in(err) if isinstance(err, Exception) else None
        if cause is not None:
            raise OSError(cause.errno, cause.strerror or str(cause), str(path)) from None
        raise
    fsync_dir(path.parent)


def fsync_dir(directory) -> None:
    """Make a rename in ``directory`` durable (not possible, nor needed, on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def payload_digest(payload) -> str:
    """SHA-256 over every tensor's bytes and every plain value, in the payload's order.

    ``torch.load`` checks no checksum of the zip it reads, so bits flipped in the weights (a bad
    disk, a copy cut and patched) would load silently; the digest saved with them catches that.
    """
    h = hashlib.sha256()

    def visit(obj):
        if torch.is_tensor(obj):
            t = obj.detach().cpu().contiguous().reshape(-1)
            h.update(f"T{t.dtype}{tuple(obj.shape)}".encode())
            h.update(t.view(torch.uint8).numpy())
        elif isinstance(obj, dict):
            h.update(b"{")
            for key, value in obj.items():
                h.update(repr(key).encode())
                visit(value)
            h.update(b"}")
        elif isinstance(obj, (list, tuple)):
            h.update(b"[")
            for value in obj:
                visit(value)
            h.update(b"]")
        else:
            h.update(repr(obj).encode())

    visit(payload)
    return h.hexdigest()


def save_checkpoint(path, payload: dict) -> None:
    """Write ``payload`` (a dict of tensors and plain types) to ``path`` atomically, with its SHA-256.

    A crash at any moment leaves the old file or the new one, never a mix; ``load_checkpoint``
    checks the digest, so bits flipped later are caught. The trainer's payload holds the model,
    optimizer, step, data position, carried state, configs and vocabulary.
    """
    payload = {"format": FORMAT, "version": VERSION, **{k: v for k, v in payload.items() if k != "sha256"}}
    payload["sha256"] = payload_digest(payload)  # a stale digest of a re-saved payload is replaced
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path, map_location="cpu", *, allow_unverified: bool = False) -> dict:
    """The payload of the checkpoint at ``path`` (a file, or a run folder: its latest or best).

    Read with ``torch.load(weights_only=True)``, tensors mapped to ``map_location`` (``"cpu"``
    by default), the SHA-256 saved with it checked. A missing file raises ``FileNotFoundError``;
    an empty, truncated, corrupted or foreign one ``CheckpointError`` (a ``ValueError``), each
    one line that says what was expected and what was found. To use a trained model, prefer
    ``gatedrnn.load``.

    Every checkpoint gatedrnn writes carries the SHA-256 of its contents; one without it is
    refused (its weights could have been altered unnoticed) unless ``allow_unverified``.
    """
    path = Path(path)
    if path.is_dir():
        for name in (LATEST, BEST):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise FileNotFoundError(f"no checkpoint in {path} (expected {LATEST} or {BEST})")
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (expected a gatedrnn checkpoint): a save was cut off?")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(load_failure(path, err)) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path} is not a gatedrnn checkpoint (expected format {FORMAT!r}, found {found!r})")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {payload.get('version')!r}, expected {VERSION}")
    saved = payload.pop("sha256", None)
    if saved is None and not allow_unverified:
        raise CheckpointError(f"checkpoint {path} carries no SHA-256 digest of its contents, so altered weights "
                              f"could not be detected (gatedrnn writes one into every checkpoint). Load it only if "
                              f"you trust where it came from: add --allow-unverified (allow_unverified=True in "
                              f"Python).")
    if saved is not None:
        found = payload_digest(payload)
        if found != saved:
            raise CheckpointError(f"checkpoint {path} is corrupted: its contents hash to SHA-256 {found[:16]}..., "
                                  f"expected {saved[:16]}... as saved with them")
    return payload


def load_failure(path, err: Exception) -> str:
    """One whole sentence for what ``torch.load(weights_only=True)`` refused (torch's own message
    runs to a page, and advises the ``weights_only=False`` that would run code from the file)."""
    text = str(err)
    found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL\s+([\w.]+)", text)
    if found:  # the file asks to build Python objects: refused before any was built
        return (f"checkpoint {path} asks to build Python objects ({found.group(1)}), and a gatedrnn checkpoint "
                f"holds only tensors and plain values: it was refused without running anything from it. It was "
                f"not written by gatedrnn, or was tampered with.")
    detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    if detail:
        first = detail.group(1).strip()
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
        first = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return (f"checkpoint {path} is truncated or corrupted (expected a gatedrnn checkpoint; torch.load found: "
            f"{first.rstrip('.')}).")


# -- random number generators as plain types ------------------------------------------------
def rng_state() -> dict:
    """Every generator training may touch, in types ``weights_only`` loading accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
