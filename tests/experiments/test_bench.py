"""``gatedrnn.experiments.bench``'s configuration and timing: which engines run where, the TF32
policy, and the interleaved timing's clock and device waits."""
import pytest
import torch


def test_gpu_engines_only_by_default_on_a_gpu(monkeypatch):
    """On CPU the defaults leave out the GPU engines, and asking for triton there says why."""
    from gatedrnn.experiments.bench import CPU_ENGINES, BenchConfig

    cfg = BenchConfig(cells=("lstm",), sizes=(8,))
    cfg.validate()
    assert cfg.engines == CPU_ENGINES
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(ValueError, match="engine triton runs on a CUDA device; got --device cpu"):
        BenchConfig(cells=("lstm",), sizes=(8,), engines=("triton", "torch")).validate()


def test_tf32_policy_sets_both_and_restores():
    from gatedrnn.experiments.bench import BenchConfig, tf32_policy

    flags = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [f.allow_tf32 for f in flags]
    for tf32 in (True, False):
        with tf32_policy(BenchConfig(tf32=tf32)):
            assert [f.allow_tf32 for f in flags] == [tf32, tf32]
        assert [f.allow_tf32 for f in flags] == before


def test_interleaved_waits_for_the_device_inside_the_timing():
    from gatedrnn.experiments.bench import interleaved

    calls = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=2,
                        sync=lambda: calls.append("sync"))
    assert calls == ["a", "sync", "b", "sync"] * 1 + ["a", "sync", "b", "sync", "b", "sync", "a", "sync"]
    assert [len(v) for v in times.values()] == [2, 2]


def test_interleaved_times_with_the_clock_it_is_given():
    from gatedrnn.experiments.bench import interleaved

    ticks = iter(range(100))
    times = interleaved({"a": lambda: None, "b": lambda: None}, repeats=3, clock=lambda: next(ticks) ** 2)
    # each call reads the clock twice, n then n + 1: (n+1)^2 - n^2 = 2n + 1, n = 0, 2, 4, ...
    assert sorted(t for v in times.values() for t in v) == [1, 5, 9, 13, 17, 21]
