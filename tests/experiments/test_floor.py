"""The products floor (``gatedrnn.experiments.floor``): it must run exactly the matrix products the fused
engine runs, no more and no fewer, or it is not the floor it claims to be. Checked by counting
floating-point operations (``torch.utils.flop_counter``) in a training step and a forward of the
fused engine against ``products_only``, with oneDNN off so that every product is an ATen ``mm``
or ``addmm`` the counter sees."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import gatedrnn.torch_engine.products as products
from gatedrnn.experiments.floor import _feed, products_only
from gatedrnn.torch_engine import layer

CASES = [("lstm", {}), ("peephole", {}), ("cifg", {}), ("gru", {}), ("rnn", {}), ("mogrifier", {}),
         ("mogrifier", {"rank": 3}), ("mogrifier", {"rounds": 4}), ("lstm", {"proj_size": 4}),
         ("lstm", {"layer_norm": True}), ("gru", {"layer_norm": True})]


def _addmm_(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs):
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def _flops(fn) -> int:
    # the in-place addmm_ the Mogrifier's backward accumulates its weight gradients with is not
    # in the counter's registry
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_}) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("cell,options", CASES, ids=lambda v: str(v) if isinstance(v, dict) else v)
def test_products_only_runs_the_fused_engines_products(monkeypatch, cell, options):
    monkeypatch.setattr(products, "ONEDNN", False)
    torch.manual_seed(0)
    module = layer(cell, 6, 8, engine="fused", **options)
    x = torch.randn(5, 3, 6, requires_grad=True)

    def train():
        y, _ = module(x)
        y.sum().backward()

    def forward():
        with torch.no_grad():
            module(x)

    trained = _flops(train)
    assert trained > 0
    assert _flops(products_only(module, x, backward=True)) == trained
    assert _flops(products_only(module, x, backward=False)) == _flops(forward)
    assert _flops(products_only(module, x, backward=True, chained=True)) == trained  # the same products


@pytest.mark.parametrize("k,n", [(3, 5), (5, 5), (10, 5), (7, 5)])
def test_feed_writes_all_of_the_next_input(k, n):
    """``_feed`` (the chained floor's write between products) fills every column of the next
    product's input from the last product's output, repeating it where the input is wider."""
    prev = torch.arange(2.0 * n).reshape(2, n)
    a = torch.full((2, k), float("nan"))
    _feed(a, prev)
    assert torch.equal(a, prev.repeat(1, -(-k // n))[:, :k])
