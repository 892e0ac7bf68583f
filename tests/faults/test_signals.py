"""Two signals that arrive during one long kernel, before the first could be acknowledged, still
stop the run at once: Python runs a handler only between bytecodes, so both signals come to one
call of it after the kernel returns; the trainer counts them (one byte each on the wakeup fd) and
stops there, without finishing the step or saving it: ``gatedrnn train: interrupted``, exit 130.
(``tests/training/test_crash.py::test_a_second_signal_stops_at_once`` covers a second signal
sent after the first was acknowledged.)"""
from __future__ import annotations

import hashlib
import signal
import time
from pathlib import Path

import pytest

from gatedrnn.training.checkpoint import load_checkpoint

from .helpers import TINY, ForkedChild, corpus_file


def one_long_kernel(marker: str) -> None:
    """In the child: the second training forward starts with one C call of about three seconds
    (PBKDF2 in OpenSSL: no Python runs inside it, so no signal handler either)."""
    from gatedrnn.models import lm

    t0 = time.perf_counter()
    hashlib.pbkdf2_hmac("sha256", b"p", b"s", 20000)
    iterations = int(20000 * 3.0 / max(time.perf_counter() - t0, 1e-4))
    forward, calls = lm.LanguageModel.forward, [0]

    def slow(self, tokens, state=None):
        if self.training:
            calls[0] += 1
            if calls[0] == 2:
                Path(marker).write_text("in the kernel")
                hashlib.pbkdf2_hmac("sha256", b"p", b"s", iterations)
        return forward(self, tokens, state)

    lm.LanguageModel.forward = slow


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_two_signals_before_the_first_is_acknowledged_stop_at_once(tmp_path, second):
    run, marker = tmp_path / "run", tmp_path / "in-kernel"
    child = ForkedChild(["train", "--data", str(corpus_file(tmp_path)), *TINY, "--steps", "50", "--save-every", "1",
                         "--eval-every", "1000", "--out", str(run)], tmp_path, tmp_path / "log",
                        setup=(one_long_kernel, str(marker)))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline and not child.ended(), "\n".join(child.finish()[1:])
        time.sleep(0.005)
    child.send_signal(signal.SIGINT)
    time.sleep(0.05)
    child.send_signal(second)
    code, text = child.finish()
    assert code == 130, text
    assert "gatedrnn train: interrupted" in text, text  # stopped at once ...
    assert "interrupted at step" not in text, text  # ... not after finishing the step
    assert int(load_checkpoint(run / "latest.pt")["step"]) == 1, text  # step 2 neither finished nor saved
