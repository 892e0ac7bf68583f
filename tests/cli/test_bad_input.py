"""Bad input to ``gatedrnn train``/``sample``/``eval`` is refused with one line that says what was
expected and what was found, exit code 2, no traceback, and nothing already on disk changed.

Each case runs the command in-process (``gatedrnn.cli.main``) for speed; one case runs the real
``python -m gatedrnn`` so the process boundary (exit status, stderr only) is checked once. Every
case snapshots the working directory (paths, sizes, mtimes, SHA-256) before and after.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gatedrnn.cli import main

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 80  # 3,600 characters
TINY = ["--cell", "lstm", "--hidden-size", "8", "--num-layers", "1", "--seq-len", "8", "--batch-size", "2",
        "--device", "cpu", "--seed", "0"]


def snapshot(root: Path) -> dict:
    """Every path under ``root``: directories by name, files by size, mtime and content hash."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            with open(p, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, digest)
    return out


def refused(argv, root: Path, capsys) -> str:
    """Run ``argv``; assert the refusal contract; return the one line printed."""
    before = snapshot(root)
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, (code, captured.out, captured.err)
    assert len(lines) == 1, captured.err
    assert captured.out == "", captured.out  # nothing half-done was reported
    assert "Traceback" not in captured.err
    assert snapshot(root) == before, "the refused command changed files on disk"
    return lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A corpus file and a trained tiny run, shared by the cases (none of them may change it)."""
    root = tmp_path_factory.mktemp("bad_input")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    code = main(["train", "--data", str(root / "corpus.txt"), *TINY, "--steps", "2", "--save-every", "1",
                 "--out", str(root / "run")])
    assert code == 0
    return root


def train(root: Path, *extra) -> list:
    return ["train", *TINY, "--steps", "2", "--sample-length", "0", *extra]


def copy_run(workdir: Path, name: str) -> Path:
    """A private copy of the trained run, for cases that damage it."""
    dest = workdir.parent / f"{workdir.name}-{name}"
    shutil.copytree(workdir, dest)
    return dest


# -- paths ------------------------------------------------------------------------------------

def test_missing_data_path(workdir, capsys):
    line = refused(train(workdir, "--data", str(workdir / "nope.txt"), "--out", str(workdir / "new")), workdir, capsys)
    assert "nope.txt" in line and "no such file" in line


def test_missing_run_for_sample_and_eval(workdir, capsys):
    for command in (["sample", str(workdir / "nope")], ["eval", str(workdir / "nope")]):
        line = refused(command, workdir, capsys)
        assert "nope" in line and ("no such" in line or "no checkpoint" in line)


def test_missing_or_undecodable_file_for_eval(workdir, capsys):
    root = copy_run(workdir, "eval-data")
    (root / "latin1.txt").write_bytes("caf\u00e9\n".encode("latin-1"))
    line = refused(["eval", str(root / "run"), "--data", str(root / "nope.txt")], root, capsys)
    assert "nope.txt" in line and "no such file" in line
    line = refused(["eval", str(root / "run"), "--data", str(root / "latin1.txt")], root, capsys)
    assert "not UTF-8" in line and "0xe9" in line


def test_resume_when_the_corpus_is_gone(workdir, capsys):
    root = copy_run(workdir, "corpus-gone")
    (root / "moved.txt").write_text(TEXT)
    assert main(["train", "--data", str(root / "moved.txt"), *TINY, "--steps", "1", "--sample-length", "0",
                 "--out", str(root / "run2")]) == 0
    capsys.readouterr()
    (root / "moved.txt").unlink()
    line = refused(["train", "--resume", str(root / "run2")], root, capsys)
    assert "moved.txt" in line and "no such file" in line


def test_resume_when_the_corpus_changed(workdir, capsys):
    root = copy_run(workdir, "corpus-changed")
    (root / "changing.txt").write_text(TEXT)
    assert main(["train", "--data", str(root / "changing.txt"), *TINY, "--steps", "1", "--sample-length", "0",
                 "--out", str(root / "run2")]) == 0
    capsys.readouterr()
    (root / "changing.txt").write_text(TEXT.replace("fox", "cat"))
    line = refused(["train", "--resume", str(root / "run2")], root, capsys)
    assert "changing.txt changed since the run" in line and "SHA-256" in line


def test_empty_file(workdir, capsys):
    root = copy_run(workdir, "empty")
    (root / "empty.txt").write_bytes(b"")
    line = refused(train(root, "--data", str(root / "empty.txt"), "--out", str(root / "new")), root, capsys)
    assert "empty" in line and "expected text" in line


def test_directory_without_a_known_layout(workdir, capsys):
    root = copy_run(workdir, "layout")
    (root / "corpus_dir").mkdir()
    (root / "corpus_dir" / "notes.md").write_text(TEXT)
    line = refused(train(root, "--data", str(root / "corpus_dir"), "--out", str(root / "new")), root, capsys)
    assert "no known corpus layout" in line and "train.txt" in line and "notes.md" in line


@pytest.mark.parametrize("level", ["char", "word"])
def test_bytes_that_are_not_utf8(workdir, capsys, level):
    root = copy_run(workdir, f"latin1-{level}")
    (root / "latin1.txt").write_bytes(("caf\u00e9 na\u00efve " * 400).encode("latin-1"))
    line = refused(train(root, "--data", str(root / "latin1.txt"), "--level", level, "--out", str(root / "new")),
                   root, capsys)
    assert "not UTF-8" in line and "0xe9" in line and "--level byte" in line


def test_corpus_too_small_for_one_batch(workdir, capsys):
    root = copy_run(workdir, "small")
    (root / "small.txt").write_text("abcdefghijklmno")  # 14 training tokens; 2 x (8 + 1) needed
    line = refused(train(root, "--data", str(root / "small.txt"), "--out", str(root / "new")), root, capsys)
    assert "too small for one batch" in line and "needs" in line


# -- sizes and names --------------------------------------------------------------------------

@pytest.mark.parametrize("flag,value", [("--hidden-size", "0"), ("--num-layers", "-1"), ("--seq-len", "0"),
                                        ("--batch-size", "-2"), ("--steps", "0"), ("--save-every", "-5"),
                                        ("--embed-size", "-3"), ("--proj-size", "-1"), ("--lr", "-0.1"),
                                        ("--lr", "inf")])
def test_sizes_that_are_zero_or_negative(workdir, capsys, flag, value):
    argv = train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "new"))
    line = refused(argv + [flag, value], workdir, capsys)
    assert flag.lstrip("-").replace("-", "_") in line.replace("-", "_") and value in line


def test_unknown_cell_suggests_close_names(workdir, capsys):
    argv = train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "new"))
    line = refused(argv + ["--cell", "lstn"], workdir, capsys)
    assert "unknown cell 'lstn'" in line and "did you mean 'lstm'" in line


@pytest.mark.parametrize("extra,expected", [
    (["--cell", "slstm", "--num-heads", "3"], "num_heads must divide hidden_size, got num_heads=3 and hidden_size=8"),
    (["--cell", "indrnn", "--nonlinearity", "sigmoid"], "Unknown nonlinearity 'sigmoid'; expected one of ('relu', 'tanh')"),
    (["--cell", "mingru", "--dropout-state", "0.2"], "dropout_state acts on the recurrent weight, which cell 'mingru' does not have"),
    (["--cell", "slstm", "--zoneout", "0.1"], "zoneout keeps each state element on its own, which is not defined for cell 'slstm'"),
])
def test_options_the_modern_cells_refuse(workdir, capsys, extra, expected):
    argv = train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "new"))
    assert expected in refused(argv + extra, workdir, capsys)


# -- run folders ------------------------------------------------------------------------------

def test_output_folder_holding_a_run_is_never_overwritten(workdir, capsys):
    line = refused(train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "run")), workdir, capsys)
    assert "already holds a run" in line and "--resume" in line


def test_resume_while_another_trainer_writes_the_run(workdir, capsys):
    root = copy_run(workdir, "busy")
    lock = root / "run" / ".lock"  # held by a live process on this host: this one
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": "now"}))
    line = refused(["train", "--resume", str(root / "run"), "--steps", "4"], root, capsys)
    assert "another trainer" in line and str(os.getpid()) in line


def test_resume_on_a_folder_without_a_run(workdir, capsys):
    root = copy_run(workdir, "norun")
    (root / "empty_dir").mkdir()
    for target in ("empty_dir", "missing_dir"):
        line = refused(["train", "--resume", str(root / target)], root, capsys)
        assert "no run to resume" in line and target in line


def test_resume_on_a_run_stopped_before_its_first_checkpoint(workdir, capsys):
    root = copy_run(workdir, "nocheckpoint")
    for name in ("latest.pt", "best.pt"):
        (root / "run" / name).unlink()
    line = refused(["train", "--resume", str(root / "run")], root, capsys)
    assert "stopped before its first checkpoint" in line and "latest.pt" in line


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # bytes flipped in the middle: the zip container's checks or the unpickler must notice
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :])


@pytest.mark.parametrize("how", ["truncated", "empty", "corrupted"])
def test_damaged_checkpoint(workdir, capsys, how):
    root = copy_run(workdir, f"checkpoint-{how}")
    run = root / "run"
    for name in ("latest.pt", "best.pt"):
        _damage(run / name, how)
    for command in (["train", "--resume", str(run)], ["sample", str(run), "--length", "5"], ["eval", str(run)]):
        line = refused(command, root, capsys)
        assert "checkpoint" in line and str(run) in line, line
        assert "corrupted" in line or "empty" in line, line


def test_checkpoint_whose_model_does_not_match(workdir, capsys):
    run = workdir / "run"
    for extra, key in ((["--hidden-size", "16"], "hidden_size"), (["--cell", "gru"], "cell"),
                       (["--num-layers", "2"], "num_layers"), (["--proj-size", "4"], "proj_size")):
        line = refused(["train", "--resume", str(run), *extra], workdir, capsys)
        assert f"the checkpoint's model has {key}=" in line and "asked" in line, line


def test_checkpoint_weights_that_do_not_fit_their_config(workdir, capsys):
    """A checkpoint edited by hand (or by another version): the config says one size, the weights another."""
    import torch

    from gatedrnn.training.checkpoint import save_checkpoint

    root = copy_run(workdir, "mismatch")
    run = root / "run"
    for name in ("latest.pt", "best.pt"):
        payload = torch.load(run / name, weights_only=True)
        payload["model_config"]["hidden_size"] = 12
        save_checkpoint(run / name, payload)  # a consistent file, so only the mismatch is wrong
    for command in (["sample", str(run), "--length", "5"], ["eval", str(run)], ["train", "--resume", str(run)]):
        line = refused(command, root, capsys)
        assert "does not fit" in line, line


def test_prompt_outside_the_vocabulary(workdir, capsys):
    line = refused(["sample", str(workdir / "run"), "--prompt", "the QUIZ", "--length", "5"], workdir, capsys)
    assert "outside the vocabulary" in line and "'Q'" in line and "'U'" in line


@pytest.mark.parametrize("argv,expected", [
    (["train", "--hidden-size", "abc"], "invalid int value: 'abc'"),
    (["train", "--level", "foo"], "invalid choice: 'foo'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["sample"], "required: RUN"),
])
def test_arguments_argparse_rejects_are_one_line_too(workdir, capsys, argv, expected):
    before = snapshot(workdir)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_.value.code == 2 and captured.out == ""
    assert len(lines) == 1 and expected in lines[0] and "--help" in lines[0], captured.err
    assert snapshot(workdir) == before


def test_refusal_through_the_real_process(workdir):
    """The process boundary: exit status 2, one line on stderr, nothing on stdout, no traceback."""
    before = snapshot(workdir)
    proc = subprocess.run([sys.executable, "-m", "gatedrnn", *train(workdir, "--data", str(workdir / "corpus.txt"),
                                                                    "--out", str(workdir / "run"))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gatedrnn train: error: ")
    assert snapshot(workdir) == before


@pytest.mark.parametrize("command", ["sample", "eval", "bench"])
def test_a_device_this_process_cannot_use(workdir, capsys, command):
    """A misspelt device, or CUDA on a torch that sees none: one line, before anything runs."""
    root = workdir
    target = [] if command == "bench" else [str(root / "run")]
    extra = ["--sizes", "8", "--cells", "lstm"] if command == "bench" else []
    line = refused([command, *target, "--device", "cdua", *extra], root, capsys)
    assert "cpu, cuda, cuda:N or auto" in line and "'cdua'" in line
    if not torch.cuda.is_available():
        line = refused([command, *target, "--device", "cuda", *extra], root, capsys)
        assert "sees no CUDA device" in line


# -- things that are not files, folders inside files, sizes no machine holds --------------------

@pytest.fixture
def fifo(tmp_path):
    """A named pipe with no writer: reading it would block forever (kept out of the snapshots)."""
    path = tmp_path / "pipe.txt"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_data_that_is_not_a_regular_file(workdir, capsys, request, special):
    path = request.getfixturevalue("fifo") if special == "fifo" else Path(special)
    if not path.exists():
        pytest.skip(f"no {path} here")
    kind = "named pipe" if special == "fifo" else "character device"
    line = refused(train(workdir, "--data", str(path), "--out", str(workdir / "new")), workdir, capsys)
    assert kind in line and str(path) in line, line
    line = refused(["eval", str(workdir / "run"), "--data", str(path)], workdir, capsys)
    assert kind in line and str(path) in line, line


def test_out_inside_a_file(workdir, capsys):
    line = refused(train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "corpus.txt" / "run")),
                   workdir, capsys)
    assert f"{workdir / 'corpus.txt'} is a file, not a folder" in line, line


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_sample_temperature_that_is_not_finite(workdir, capsys, value):
    line = refused(["sample", str(workdir / "run"), f"--temperature={value}"], workdir, capsys)
    assert "--temperature must be a finite number" in line, line


@pytest.mark.parametrize("flag,value", [("--hidden-size", "10000000"), ("--num-layers", "100000000"),
                                        ("--embed-size", "100000000000")])
def test_sizes_no_machine_holds_are_refused_before_allocating(workdir, capsys, flag, value):
    """Checked from the cells' parameter specs against the memory available, before anything is
    built: a refusal in a moment, not an allocation that runs for seconds or until memory ends."""
    import time

    t0 = time.monotonic()
    line = refused(train(workdir, "--data", str(workdir / "corpus.txt"), "--out", str(workdir / "new"), flag, value),
                   workdir, capsys)
    assert "does not fit in memory" in line and "parameters" in line and "--skip-memory-check" in line, line
    assert time.monotonic() - t0 < 30  # generous for a loaded machine; building the model takes minutes or never ends


def test_a_checkpoint_whose_config_asks_for_a_huge_model(workdir, capsys):
    """``model_config`` edited to ``hidden_size=10**7`` (weights unchanged, digest redone): refused
    from the config and the weights' size, before the model is built."""
    root = copy_run(workdir, "huge-config")
    run = root / "run"
    for name in ("latest.pt", "best.pt"):
        payload = torch.load(run / name, weights_only=True)
        payload["model_config"]["hidden_size"] = 10**7
        from gatedrnn.training.checkpoint import save_checkpoint

        save_checkpoint(run / name, payload)
    for command in (["sample", str(run), "--length", "5"], ["eval", str(run)], ["train", "--resume", str(run)]):
        line = refused(command, root, capsys)
        assert "does not fit its own model config" in line and "10,000,000" in line, line
        assert "before building the model" in line, line


def test_resume_asking_for_another_cell_names_the_cell(workdir, capsys):
    """``--cell mogrifier --rounds 3`` on an LSTM run: the cell differs, not ``rounds=None``."""
    line = refused(["train", "--resume", str(workdir / "run"), "--cell", "mogrifier", "--rounds", "3"], workdir, capsys)
    assert "the checkpoint's model has cell='lstm', but cell='mogrifier' was asked for" in line, line
