"""torch_engine/buffers.py: one allocation carved into a loop's saved buffers, huge-page backed
where the system offers it, the same tensors either way."""
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
