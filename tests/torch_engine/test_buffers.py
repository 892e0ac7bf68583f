"""torch_engine/buffers.py: one allocation carved into a loop's saved buffers, huge-page backed
where the system offers it, the same tensors either way."""
import threading

import pytest
import torch

from gatedrnn.torch_engine import buffers

SHAPES = [(3, 2, 5), (4,), (2, 3, 1, 7)]


@pytest.mark.parametrize("min_bytes", [0, 1 << 40], ids=["advised", "plain"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_views_are_disjoint_and_shaped(min_bytes, dtype, monkeypatch):
    monkeypatch.setattr(buffers, "MIN_BYTES", min_bytes)
    like = torch.zeros(1, dtype=dtype)
    out = buffers.carve(like, SHAPES)
    assert [tuple(t.shape) for t in out] == SHAPES
    assert all(t.dtype == dtype and t.is_contiguous() for t in out)
    for k, t in enumerate(out):
        t.fill_(k)
    for k, t in enumerate(out):  # no view overlaps another
        assert torch.equal(t, torch.full(t.shape, float(k), dtype=dtype))
    if min_bytes == 0 and buffers._madvise() is not None:
        assert out[0].data_ptr() % buffers.HUGE_PAGE == 0  # starts on a huge page


def test_off_switch_and_no_madvise(monkeypatch):
    like = torch.zeros(1)
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    for patch in ((buffers, "ENABLED", False), (buffers, "_state", {"madvise": None})):
        with monkeypatch.context() as m:
            m.setattr(*patch)
            out = buffers.carve(like, SHAPES)
            assert [tuple(t.shape) for t in out] == SHAPES
            assert out[0].untyped_storage().nbytes() == sum(t.numel() for t in out) * 4  # no slack


def test_an_empty_shape():
    out = buffers.carve(torch.zeros(1), [(0, 3), (2,)])
    assert out[0].shape == (0, 3) and out[1].shape == (2,)


def test_scratch_keeps_one_buffer_a_name(monkeypatch):
    """From ``SCRATCH_MIN_BYTES`` on: the same memory for a name call after call (the largest asked for),
    other memory for another name; below it, or switched off, a fresh tensor each time."""
    monkeypatch.setattr(buffers, "_kept", threading.local())
    monkeypatch.setattr(buffers, "SCRATCH_MIN_BYTES", 64)
    like = torch.zeros(1, dtype=torch.float64)
    a = buffers.scratch("a", like, 4, 5)
    assert a.shape == (4, 5) and a.dtype == torch.float64 and a.is_contiguous()
    assert buffers.scratch("a", like, 2, 10).data_ptr() == a.data_ptr()  # the same 20 elements, reshaped
    assert buffers.scratch("a", like, 3).data_ptr() != a.data_ptr()  # 24 bytes: under SCRATCH_MIN_BYTES
    assert buffers.scratch("b", like, 4, 5).data_ptr() != a.data_ptr()
    bigger = buffers.scratch("a", like, 40)
    assert buffers.scratch("a", like, 4, 5).data_ptr() == bigger.data_ptr()
    assert buffers.scratch("a", torch.zeros(1), 4, 5).dtype == torch.float32  # per dtype
    monkeypatch.setattr(buffers, "SCRATCH", False)
    assert buffers.scratch("a", like, 4, 5).data_ptr() != bigger.data_ptr()
    buffers.release_scratch()
    assert not getattr(buffers._kept, "buffers", None)


@pytest.fixture
def pool(monkeypatch):
    """An empty pool of ``carve``'s kept allocations, recycling from any size."""
    monkeypatch.setattr(buffers, "_pool", [])
    monkeypatch.setattr(buffers, "RECYCLE_MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "MIN_BYTES", 1 << 40)  # ordinary pages: the test is of the pool alone
    return buffers._pool


def test_carve_hands_out_memory_again_once_nothing_uses_it(pool):
    like = torch.zeros(1)
    a, b = buffers.carve(like, [(10,), (5, 2)])
    first = a.data_ptr()
    assert buffers.carve(like, [(10,), (5, 2)])[0].data_ptr() != first  # a and b still use it
    del a
    assert buffers.carve(like, [(20,)])[0].data_ptr() != first  # b still does
    del b
    again, rest = buffers.carve(like, [(12,), (8,)])  # 20 elements again, no tensor left on the first
    assert again.data_ptr() == first
    again.fill_(1.0)
    rest.fill_(2.0)
    assert torch.equal(again, torch.ones(12)) and torch.equal(rest, torch.full((8,), 2.0))


def test_carve_leaves_memory_a_tensor_or_storage_still_holds(pool):
    like = torch.zeros(1)
    y, = buffers.carve(like, [(6, 4)])
    first = y.data_ptr()
    kept = y[1:].detach()  # an output the caller keeps
    del y
    assert buffers.carve(like, [(24,)])[0].data_ptr() != first
    storage = kept.untyped_storage()
    del kept
    assert buffers.carve(like, [(24,)])[0].data_ptr() != first  # its storage object is still held
    del storage
    assert buffers.carve(like, [(24,)])[0].data_ptr() == first


@pytest.mark.parametrize("case", ["other dtype", "too small", "over twice the size", "switched off"])
def test_carve_recycles_only_what_fits(pool, monkeypatch, case):
    like = torch.zeros(1)
    first = buffers.carve(like, [(20,)])[0].data_ptr()
    ask = {"other dtype": (torch.zeros(1, dtype=torch.float64), 20), "too small": (like, 21),
           "over twice the size": (like, 9), "switched off": (like, 20)}[case]
    if case == "switched off":
        monkeypatch.setattr(buffers, "RECYCLE", False)
    assert buffers.carve(ask[0], [(ask[1],)])[0].data_ptr() != first
    monkeypatch.setattr(buffers, "RECYCLE", True)
    assert buffers.carve(like, [(10,)])[0].data_ptr() == first  # half the size still fits


def test_carve_keeps_at_most_max_kept(pool, monkeypatch):
    monkeypatch.setattr(buffers, "MAX_KEPT", 2)
    like = torch.zeros(1)
    held = [buffers.carve(like, [(n,)])[0] for n in (10, 30, 90)]  # none fits another: three allocations
    assert len(pool) == 3  # all in use: none can go
    del held
    buffers.carve(like, [(300,)])
    assert [n for _, _, n in pool] == [90, 300]  # the least recently handed out unused ones went
    buffers.release()
    assert pool == []


@pytest.mark.parametrize("context", ["inference mode", "vmap", "fake tensors"])
def test_memory_made_where_a_later_call_cannot_use_it_is_not_kept(pool, monkeypatch, context):
    """An inference tensor, a ``torch.func``-batched one or a fake one cannot serve a later eager
    call: ``carve`` and ``scratch`` make such memory afresh and keep none of it."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.func import vmap

    monkeypatch.setattr(buffers, "_kept", threading.local())
    monkeypatch.setattr(buffers, "MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "SCRATCH_MIN_BYTES", 0)

    def make(like):
        buffers.carve(like, [(6, 4)])
        buffers.scratch("s", like, 6, 4)
        return like

    if context == "inference mode":
        with torch.inference_mode():
            make(torch.zeros(3))
    elif context == "vmap":
        vmap(make)(torch.zeros(2, 3))
    else:
        with FakeTensorMode():
            make(torch.zeros(3))
    assert pool == [] and not getattr(buffers._kept, "buffers", None)
    out, = buffers.carve(torch.zeros(1), [(6, 4)])
    out.fill_(1.0)  # an ordinary tensor, written in place outside any of those
    buffers.scratch("s", torch.zeros(1), 6, 4).fill_(1.0)
    assert len(pool) == 1 and buffers._kept.buffers
