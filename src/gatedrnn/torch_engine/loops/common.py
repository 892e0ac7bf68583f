"""What every specialised loop shares: the two products (input, hoisted; recurrent, per step)
with layer norm and state dropout, the constants folded into one bias, and the keep masks.

Symbols used across the loops (shapes in the legend of DESIGN.md; ``S`` is ``T`` when the
forward saves for a backward, else 1, a reused buffer):

- ``gx`` ``(T, B, N)``: every step's input pre-activation, one product before the loop.
- ``Hs`` ``(T+1, B, H)``: ``h_0 .. h_T``, the states after zoneout; ``y`` is ``Hs[1:]``.
- ``kh``, ``kc``: the keep masks of ``h`` and ``c`` (zoneout, padding), broadcastable to
  ``(T, B, size)``, ``None`` where a state is not mixed; ``nkh``, ``nkc``: ``1 - keep``.
- ``dA`` ``(T, B, N)``: every step's pre-activation gradient, kept so each weight gradient is one
  product after the loop.
- ``hh``: the recurrent product of each step (a ``Recurrent``).
"""
from __future__ import annotations

import torch

from ...cells.base import LN_EPS
from .. import buffers, compiled
from ..products import Product, hoisted, input_grad, rows, sum_rows, weight_grad, weight_grads


def keep_masks(keep, n, complement=False):
    """The keep mask of each state element (``None``: not mixed), and with ``complement`` also
    ``1 - keep`` (the backward's share of the gradient that goes through the step)."""
    keep = (None,) * n if keep is None else tuple(keep)
    if not complement:
        return keep
    return keep, tuple(None if k is None else 1.0 - k for k in keep)


def lerp_into(out, new, prev, k):
    """``out = keep * prev + (1 - keep) * new`` (zoneout or a padded step), or ``new``."""
    if k is None:
        if out is not new:
            out.copy_(new)
    else:
        torch.lerp(new, prev, k, out=out)


def split_carry(d, k, nk, t):
    """The backward of ``s_t = k_t s_{t-1} + (1 - k_t) s_new`` for one state's gradient ``d``:
    ``(carried, d_new)``, the share that goes straight to ``s_{t-1}`` and the share that goes
    through the step (``k``, ``nk``: a state's keep masks and ``1 - keep``); ``(None, d)`` where
    the state is not mixed."""
    if k is None:
        return None, d
    return d * k[t], d * nk[t]


def add_carry(d, carried):
    """``d + carried`` in place (``d`` a fresh tensor), where a share was carried."""
    return d if carried is None else d.add_(carried)


def combined_bias(cell, p, G, H, like):
    """``bias_ih + bias_hh`` (``+ ln_bias_hh``) with ``forget_bias`` folded into the forget
    block, or ``None``: every constant added to the gates' pre-activations, added once."""
    bias = p["bias_ih"] + p["bias_hh"] if cell.bias else None
    if cell.layer_norm:
        bias = p["ln_bias_hh"] if bias is None else bias + p["ln_bias_hh"]
    if getattr(cell, "forget_bias", 0.0):
        if bias is None:
            bias = like.new_zeros(G * H)
        k = cell.gates.index("f")
        bias = bias.clone()
        bias[k * H : (k + 1) * H] += cell.forget_bias
    return bias


def bias_grads(cell, d, grads, *names):
    """The gradient of each additive bias is the sum of its pre-activations' gradient."""
    present = [n for n in names if (n.startswith("ln_") and cell.layer_norm) or (not n.startswith("ln_") and cell.bias)]
    if present:
        total = sum_rows(d)
        for k, n in enumerate(present):
            grads[n] = total if k == 0 else total.clone()


# -- the two products every cell has, with state dropout and layer norm -----------------------
def input_forward(cell, p, x, bias, norm_in_step=False):
    """``gx = x W_ih^T + bias`` over all steps at once, layer-normalised (gain ``ln_weight_ih``)
    when the cell says so; returns ``gx (T, B, N)`` and what the backward needs. With
    ``norm_in_step`` (a compiled step that normalises each step's rows itself) ``gx`` is the
    product alone, before its norm and ``bias``, and the statistics the backward reads are left
    for the step to fill."""
    T, B, _ = x.shape
    w = p["weight_ih"]
    N = w.shape[0]
    if not cell.layer_norm:
        return hoisted(rows(x), w, bias).view(T, B, N), {}
    ax = hoisted(rows(x), w)
    if norm_in_step:
        return ax.view(T, B, N), {"in_a": ax, "in_mu": x.new_empty(T * B, 1), "in_rstd": x.new_empty(T * B, 1)}
    out, mu, rstd = torch.native_layer_norm(ax, [N], p["ln_weight_ih"], bias, LN_EPS)
    return out.view(T, B, N), {"in_a": ax, "in_mu": mu, "in_rstd": rstd}


def _layer_norm_backward(d, a, mu, rstd, gain):
    """``dL/da`` and the gain's gradient through ``LN(a) * gain (+ bias)`` over the rows of
    ``a``: one pass of the compiled kernel (``csrc/layernorm.cpp``) where it takes the call, else ATen's."""
    kernels = compiled.pointwise() if compiled.usable(d) and d.shape[-1] and d.is_contiguous() else None
    if kernels is None:
        dx, dgain, _ = torch.ops.aten.native_layer_norm_backward(d, a, [a.shape[-1]], mu, rstd, gain, None,
                                                                  [True, True, False])
        return dx, dgain
    dx, acc = buffers.scratch("layer_norm.dx", d, *d.shape), d.new_zeros(torch.get_num_threads(), d.shape[-1])
    kernels.layer_norm_backward(d, a, mu, rstd, gain.contiguous(), dx, acc)
    return dx, acc.sum(0)


def input_backward(cell, p, x, saved, dgx, need_dx, grads):
    """Adds ``weight_ih`` (and ``ln_weight_ih``) gradients; ``dx`` into ``grads["x"]`` if asked."""
    T, B, I = x.shape
    w = p["weight_ih"]
    d = rows(dgx)
    if cell.layer_norm:
        d, grads["ln_weight_ih"] = _layer_norm_backward(d, saved["in_a"], saved["in_mu"], saved["in_rstd"],
                                                        p["ln_weight_ih"])
    grads["weight_ih"] = weight_grad(d, x)
    if need_dx:
        grads["x"] = input_grad(d, w).view(T, B, I)


class Recurrent:
    """Each step's ``(h * mask_hh) @ W_hh^T``: layer-normalised when the cell says so (gain
    ``ln_weight_hh``, then ``ln_bias``), plus ``add`` (a bias, or the step's input pre-activation,
    which oneDNN adds inside the product when there is no layer norm).

    ``mask_hh`` ``(B, R)`` is variational dropout of the state that feeds the product (the other
    uses of ``h`` see it undropped). With layer norm the forward keeps each step's product ``R``
    and its statistics ``Mu``, ``Rs`` (mean, 1/std); the backward turns ``dL/d(output)`` into
    ``dL/dh`` per step (keeping ``dR``, the gradient of the product before layer norm) and gives
    the weight gradients as one product after the loop.
    """

    def __init__(self, cell, p, B, steps, like, saved=None, ln_bias=None, backward=False):
        w = p["weight_hh"]
        self.N = w.shape[0]
        self.ln, self.mask = cell.layer_norm, p.get("mask_hh")
        self.gain, self.ln_bias = p.get("ln_weight_hh"), ln_bias
        self.prod = Product(w.t() if backward else w, B)
        self.gain_grad = None  # ln_weight_hh's gradient where a kernel summed it during the backward
        if backward:
            self.R, self.Mu, self.Rs = (saved.get(k) for k in ("hh_a", "hh_mu", "hh_rstd"))
            self.dR = buffers.scratch("recurrent.dR", like, steps, B, self.N) if self.ln else None
        else:
            self.hm = like.new_empty(B, w.shape[1]) if self.mask is not None else None
            if self.ln:
                self.R, self.Mu, self.Rs = buffers.carve(like, [(steps, B, n) for n in (self.N, 1, 1)])

    def saved(self):
        return {"hh_a": self.R, "hh_mu": self.Mu, "hh_rstd": self.Rs} if self.ln else {}

    def raw(self, h):
        """The product alone, ``(h * mask_hh) @ W_hh^T``, for a kernel that normalises it itself
        (it then fills ``R``, ``Mu``, ``Rs``)."""
        if self.mask is not None:
            h = torch.mul(h, self.mask, out=self.hm)
        return self.prod(h)

    def __call__(self, h, s, add=None):
        if self.mask is not None:
            h = torch.mul(h, self.mask, out=self.hm)
        if not self.ln:
            return self.prod(h, add)
        r = self.prod(h)
        out, mu, rstd = torch.native_layer_norm(r, [self.N], self.gain, self.ln_bias, LN_EPS)
        self.R[s], self.Mu[s], self.Rs[s] = r, mu, rstd
        return out if add is None else out.add_(add)

    def backward(self, d, t):
        """``dL/dh_{t-1}`` from the gradient ``d`` of this step's output."""
        if self.ln:
            d = torch.ops.aten.native_layer_norm_backward(
                d, self.R[t], [self.N], self.Mu[t], self.Rs[t], self.gain, None, [True, False, False])[0]
            self.dR[t] = d
        return self.product_backward(d)

    def product_backward(self, d):
        """``dL/dh_{t-1}`` from the gradient ``d`` of this step's product (``dR[t]`` with layer norm)."""
        dh = self.prod(d)
        return dh if self.mask is None else dh.mul_(self.mask)

    def product_input(self, Hprev):
        """What each step's product multiplied: ``h_{t-1}`` through state dropout's mask."""
        return Hprev if self.mask is None else Hprev * self.mask

    def grads(self, dout, Hprev, grads):
        """``weight_hh`` (and ``ln_weight_hh``) gradients from every step's output gradient."""
        inp = self.product_input(Hprev)
        if not self.ln:
            grads["weight_hh"] = weight_grad(dout, inp)
            return
        grads["weight_hh"] = weight_grad(self.dR, inp)
        if self.gain_grad is not None:
            grads["ln_weight_hh"] = self.gain_grad
            return
        r_hat = (self.R - self.Mu).mul_(self.Rs)
        grads["ln_weight_hh"] = (rows(dout) * rows(r_hat)).sum(0)


def summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx) -> dict:
    """Gradients of both products and every bias where the input and recurrent pre-activations
    are summed (the LSTM family, the Elman RNN): ``dA`` is the gradient of that sum."""
    grads = {}
    if cell.layer_norm:  # each weight's gradient reads its own norm's backward of dA
        hh.grads(dA, Hs[:-1], grads)
        input_backward(cell, p, x, saved, dA, need_dx, grads)
    else:  # both read dA: one transposition of it where the kernel needs one
        grads["weight_hh"], grads["weight_ih"] = weight_grads(dA, [hh.product_input(Hs[:-1]), x])
        if need_dx:
            grads["x"] = input_grad(rows(dA), p["weight_ih"]).view(x.shape)
    bias_grads(cell, dA, grads, "bias_ih", "bias_hh", "ln_bias_hh")
    return grads
