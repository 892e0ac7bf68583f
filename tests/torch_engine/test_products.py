"""The product kernels of the fused loops (torch_engine/products.py): oneDNN's packed product and
the plain fallback agree, and the weight size decides which runs."""
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
