"""The product kernels of the fused loops (torch_engine/products.py): oneDNN's packed product and
the plain fallback agree, and the weight size decides which runs; the products of all steps at
once agree on either kernel."""
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


def test_products_of_all_steps_keep_autograd(monkeypatch):
    """With inputs that need gradients (outside the engine's own backward) the product stays on
    ``torch.mm``, which autograd differentiates."""
    monkeypatch.setattr(products, "ONEDNN_MANY", True)
    x, w = torch.randn(50, 6, requires_grad=True), torch.randn(8, 6, requires_grad=True)
    assert not products._many_on_onednn(x, w, None)
    products.hoisted(x, w).sum().backward()
    torch.testing.assert_close(w.grad, x.detach().sum(0).expand(8, 6))

