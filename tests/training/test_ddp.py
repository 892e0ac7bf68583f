"""Data parallel training: 2 processes (torchrun, gloo on CPU), each on half the batch rows, end
with the parameters and carried state of one process trained on the whole batch."""
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from gatedrnn.training import load_checkpoint

from .lm_helpers import TEXT

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

# SGD, not Adam: Adam's update does not depend on the gradient's scale (a sum taken for a mean
# would go unseen), and it divides by the gradient's running size, so where a gradient is near zero
# a rounding in the all-reduce moves the weight by a visible part of the learning rate
ARGS = ["train", "--hidden-size", "16", "--seq-len", "12", "--batch-size", "4", "--steps", "4", "--warmup", "0",
        "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.5", "--log-every", "1", "--eval-every", "1000",
        "--device", "cpu", "--sample-length", "0", "--seed", "5",
        "--precision", "float32"]  # bf16 (auto, where the processor has it) rounds each half apart
# one thread per process: two processes with two threads each thrash on a 2-core machine
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(cmd, cwd):
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path):
    (tmp_path / "code.txt").write_text(TEXT)
    args = [*ARGS, "--data", "code.txt"]
    out = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "gatedrnn", *args, "--out", "two"], tmp_path)
    assert "x 2 processes" in out and sum(line.startswith("step ") for line in out.splitlines()) == 4  # rank 0 alone prints
    run([sys.executable, "-m", "gatedrnn", *args, "--out", "one"], tmp_path)
    two, one = load_checkpoint(tmp_path / "two" / "latest.pt"), load_checkpoint(tmp_path / "one" / "latest.pt")
    assert two["world_size"] == 2 and two["step"] == one["step"] == 4
    for name, p in one["model"].items():
        # the same sums in another order (per-rank means, then the all-reduce): float32 rounding only
        torch.testing.assert_close(two["model"][name], p, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(two["state"], one["state"]):  # both ranks' rows gathered into the checkpoint
        assert a.shape == b.shape == (1, 4, 16)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert len(two["rng"]) == 2  # each rank's generators, for an exact resume
    assert not (tmp_path / "two" / ".latest.pt.tmp").exists()
