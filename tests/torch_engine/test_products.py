"""The product kernels of the fused loops (torch_engine/products.py): oneDNN's packed product and
the plain fallback agree, and the weight size decides which runs; the products of all steps at
once, the weight gradients among them, agree on either kernel."""
import pytest
import torch

from gatedrnn.torch_engine import products


def test_product_kernels_agree(monkeypatch):
    """oneDNN's packed product (where this build has it) and the torch.addmm fallback agree."""
    gen = torch.Generator().manual_seed(0)
    w, x, add = (torch.randn(s, generator=gen) for s in ((12, 7), (5, 7), (5, 12)))
    bias = torch.randn(12, generator=gen)
    expected = x @ w.T
    monkeypatch.setattr(products, "ONEDNN_MIN_WEIGHT", 0)
    kernels = [products.Product(w, 5)]
    monkeypatch.setattr(products, "ONEDNN", False)
    kernels.append(products.Product(w, 5))
    assert kernels[1].packed is None
    for prod in kernels:
        torch.testing.assert_close(prod(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prod(x, bias), expected + bias, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(prod(x, add), expected + add, rtol=1e-5, atol=1e-5)


def test_small_weights_run_on_mkl():
    """Below ``ONEDNN_MIN_WEIGHT`` elements a product keeps the plain kernel; from it on, oneDNN
    where this build and processor take it."""
    small = torch.zeros(products.ONEDNN_MIN_WEIGHT // 512 - 1, 512)
    big = torch.zeros(products.ONEDNN_MIN_WEIGHT // 512, 512)
    assert products.Product(small, 32).packed is None
    assert (products.Product(big, 32).packed is not None) == products.onednn_usable(big)
    assert products.onednn_usable(big) == (torch.backends.mkldnn.is_available()
                                           and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def _onednn_here():
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@pytest.mark.parametrize("many", [True, False], ids=["onednn", "mkl"])
def test_products_of_all_steps_agree(many, monkeypatch):
    """``hoisted`` (with and without a bias, on a transposed weight too) and ``input_grad`` give
    ``torch.mm``'s figures on oneDNN and on MKL; float64 always takes ``torch.mm``."""
    monkeypatch.setattr(products, "ONEDNN_MANY", many)
    gen = torch.Generator().manual_seed(1)
    x, w, bias, d = (torch.randn(s, generator=gen) for s in ((300, 24), (40, 24), (40,), (300, 40)))
    assert products._many_on_onednn(x, w, bias) == (many and _onednn_here())
    assert not products._many_on_onednn(x.double(), w.double(), None)
    torch.testing.assert_close(products.hoisted(x, w), x @ w.T, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(products.hoisted(x, w, bias), x @ w.T + bias, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(products.hoisted(d, w.t()), d @ w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(products.input_grad(d, w), d @ w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(products.hoisted(x.double(), w.double()), x.double() @ w.double().T)
    assert products.hoisted(x[:0], w).shape == (0, 40)


@pytest.mark.parametrize("many", [True, False], ids=["onednn", "mkl"])
@pytest.mark.parametrize("on_onednn", [True, False], ids=["wgrad_onednn", "wgrad_mkl"])
def test_weight_gradients_agree(many, on_onednn, monkeypatch):
    """``weight_grad`` (rows flattened or not, on views as the loops pass them) gives ``torch.mm``'s
    figures whichever kernel runs it, and runs oneDNN's exactly when both switches say so (these
    small gradients with ``WEIGHT_GRAD_MIN`` lowered to 0)."""
    monkeypatch.setattr(products, "ONEDNN_MANY", many)
    monkeypatch.setattr(products, "WEIGHT_GRAD_ON_ONEDNN", on_onednn)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN", 0)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN_THREADED", 0)
    gen = torch.Generator().manual_seed(2)
    d, inp = torch.randn(6, 50, 40, generator=gen), torch.randn(7, 50, 24, generator=gen)
    expected = d.reshape(-1, 40).t() @ inp[:-1].reshape(-1, 24)
    calls = []
    real = torch.ops.mkldnn._linear_pointwise if _onednn_here() else None
    if real is not None:
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a))
    torch.testing.assert_close(products.weight_grad(d, inp[:-1]), expected, rtol=1e-5, atol=1e-4)
    assert bool(calls) == (many and on_onednn and _onednn_here())
    torch.testing.assert_close(products.weight_grad(d.reshape(-1, 40), inp[:-1].reshape(-1, 24)), expected,
                               rtol=1e-5, atol=1e-4)
    assert products.weight_grad(d.double(), inp[:-1].double()).dtype == torch.float64
    calls.clear()
    two = products.weight_grads(d, [inp[:-1], inp[1:]])  # one gradient shared by two products
    torch.testing.assert_close(two[0], expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(two[1], d.reshape(-1, 40).t() @ inp[1:].reshape(-1, 24), rtol=1e-5, atol=1e-4)
    assert len(calls) == (2 if many and on_onednn and _onednn_here() else 0)
    assert products.weight_grad(d[:, :0], inp[:-1, :0]).abs().sum() == 0  # no rows: zeros
    acc = torch.ones(40, 24)  # a chunk's share added in place; a column slice of the inputs as the Mogrifier's
    wide = torch.cat([inp[:-1], torch.randn(6, 50, 3, generator=gen)], dim=2)
    assert products.add_weight_grad(acc, d, wide[..., :24]) is acc
    torch.testing.assert_close(acc, expected + 1, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("threads", [1, 2])
def test_small_weight_gradients_run_on_mkl(threads, monkeypatch):
    """A weight gradient of fewer than ``WEIGHT_GRAD_MIN`` elements (at one thread;
    ``WEIGHT_GRAD_MIN_THREADED`` at more) runs on ``torch.mm`` even where the products of all steps
    run on oneDNN; from it on, on oneDNN (where this build has it)."""
    monkeypatch.setattr(products, "ONEDNN_MANY", True)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN", 40 * 24)
    monkeypatch.setattr(products, "WEIGHT_GRAD_MIN_THREADED", 40 * 30)
    least = 24 if threads == 1 else 30
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d = torch.randn(30, 40)
        assert not products._grad_on_onednn(d, torch.randn(30, least - 1))
        assert products._grad_on_onednn(d, torch.randn(30, least)) == _onednn_here()
    finally:
        torch.set_num_threads(before)
    calls = []
    if _onednn_here():  # the gradient itself is torch.mm's either way
        real = torch.ops.mkldnn._linear_pointwise
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a))
    inp = torch.randn(30, 23)
    torch.testing.assert_close(products.weight_grad(d, inp), d.t() @ inp, rtol=1e-5, atol=1e-4)
    assert not calls


def test_products_of_all_steps_keep_autograd(monkeypatch):
    """With inputs that need gradients (outside the engine's own backward) the product stays on
    ``torch.mm``, which autograd differentiates."""
    monkeypatch.setattr(products, "ONEDNN_MANY", True)
    x, w = torch.randn(50, 6, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    assert not products._many_on_onednn(x, w, None)
    products.hoisted(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.detach().sum(0).expand(8, 6))

