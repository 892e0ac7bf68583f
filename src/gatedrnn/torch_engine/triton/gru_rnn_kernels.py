"""The GRU's and the Elman RNN's step, forward and backward, each one Triton kernel.

GRU (PyTorch's placement: ``b_hn`` inside ``r * (W_hn h + b_hn)``). Forward reads the step's
input pre-activations ``gx`` ``(B, 3H)`` (with ``b_ih``), the recurrent product ``gh`` ``(B, 3H)``
(with ``b_hh``), ``h_{t-1}`` (and zoneout's keep mask, the state dropout mask); writes the gates
``r, z, n`` ``(B, 3H)`` and ``gh_n`` ``(B, H)`` (saved), ``h_t`` after zoneout and the next
product's input. Backward reads those, the raw product ``dgh_{t+1} W_hh`` of the step after, the
carried gradient and ``dy_t``; writes ``dgx_t``, ``dgh_t`` (both ``(B, 3H)``, saved for the weight
gradients; ``dgh_t`` is the next product's input) and the carried gradient ``dh z`` (plus
zoneout's kept share).

RNN: forward reads ``a`` ``(B, H)`` (both products and biases), writes ``act(a)`` (saved with
zoneout, where it differs from ``h_t``), ``h_t`` and the next product's input. Backward writes
``da_t`` and the carried gradient.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import mix, sigmoid, tanh


@triton.jit
def gru_forward(GX, GH, H_PREV, KH, MASK, GATES, GHN, H_OUT, HP, N, H,
                KEEP_H: tl.constexpr, WRITE_HP: tl.constexpr, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    row = idx // H
    col = idx % H
    off = row * (3 * H) + col
    ct = H_OUT.dtype.element_ty
    gt = GATES.dtype.element_ty
    hp = tl.load(H_PREV + idx, mask=m, other=0.0).to(ct)
    r = sigmoid(tl.load(GX + off, mask=m, other=0.0).to(ct) + tl.load(GH + off, mask=m, other=0.0).to(ct))
    z = sigmoid(tl.load(GX + off + H, mask=m, other=0.0).to(ct) + tl.load(GH + off + H, mask=m, other=0.0).to(ct))
    ghn = tl.load(GH + off + 2 * H, mask=m, other=0.0).to(ct)
    n = tanh(tl.load(GX + off + 2 * H, mask=m, other=0.0).to(ct) + r * ghn)
    tl.store(GATES + off, r.to(gt), mask=m)
    tl.store(GATES + off + H, z.to(gt), mask=m)
    tl.store(GATES + off + 2 * H, n.to(gt), mask=m)
    tl.store(GHN + idx, ghn.to(GHN.dtype.element_ty), mask=m)
    h = n + z * (hp - n)
    if KEEP_H:
        h = mix(h, hp, tl.load(KH + idx, mask=m, other=0.0).to(ct))
    tl.store(H_OUT + idx, h.to(ct), mask=m)
    if WRITE_HP:
        if HAS_MASK:
            h = h * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
        tl.store(HP + idx, h.to(HP.dtype.element_ty), mask=m)


@triton.jit
def gru_backward(DPROD, MASK, CARRY, DY, GATES, GHN, H_PREV, KH, DGX, DGH, N, H,
                 KEEP_H: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DY: tl.constexpr, BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    row = idx // H
    col = idx % H
    off = row * (3 * H) + col
    ct = CARRY.dtype.element_ty
    dt = DGX.dtype.element_ty
    dh = tl.load(DPROD + idx, mask=m, other=0.0).to(ct)
    if HAS_MASK:
        dh = dh * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
    dh += tl.load(CARRY + idx, mask=m, other=0.0).to(ct)
    if HAS_DY:
        dh += tl.load(DY + idx, mask=m, other=0.0).to(ct)
    carry = dh * 0.0
    if KEEP_H:
        carry = dh * tl.load(KH + idx, mask=m, other=0.0).to(ct)
        dh = dh - carry
    r = tl.load(GATES + off, mask=m, other=0.0).to(ct)
    z = tl.load(GATES + off + H, mask=m, other=0.0).to(ct)
    n = tl.load(GATES + off + 2 * H, mask=m, other=0.0).to(ct)
    hp = tl.load(H_PREV + idx, mask=m, other=0.0).to(ct)
    da_n = dh * (1.0 - z) * (1.0 - n * n)
    da_z = dh * (hp - n) * z * (1.0 - z)
    da_r = da_n * tl.load(GHN + idx, mask=m, other=0.0).to(ct) * r * (1.0 - r)
    tl.store(DGX + off, da_r.to(dt), mask=m)
    tl.store(DGX + off + H, da_z.to(dt), mask=m)
    tl.store(DGX + off + 2 * H, da_n.to(dt), mask=m)
    tl.store(DGH + off, da_r.to(dt), mask=m)
    tl.store(DGH + off + H, da_z.to(dt), mask=m)
    tl.store(DGH + off + 2 * H, (da_n * r).to(dt), mask=m)
    tl.store(CARRY + idx, (carry + dh * z).to(ct), mask=m)


@triton.jit
def rnn_forward(A, H_PREV, KH, MASK, ACT, H_OUT, HP, N,
                RELU: tl.constexpr, KEEP_H: tl.constexpr, WRITE_HP: tl.constexpr, HAS_MASK: tl.constexpr,
                BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    ct = H_OUT.dtype.element_ty
    a = tl.load(A + idx, mask=m, other=0.0).to(ct)
    if RELU:
        h = tl.maximum(a, 0.0)
    else:
        h = tanh(a)
    if KEEP_H:
        tl.store(ACT + idx, h.to(ct), mask=m)
        hp = tl.load(H_PREV + idx, mask=m, other=0.0).to(ct)
        h = mix(h, hp, tl.load(KH + idx, mask=m, other=0.0).to(ct))
    tl.store(H_OUT + idx, h.to(ct), mask=m)
    if WRITE_HP:
        if HAS_MASK:
            h = h * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
        tl.store(HP + idx, h.to(HP.dtype.element_ty), mask=m)


@triton.jit
def rnn_backward(DPROD, MASK, CARRY, DY, ACT, KH, DA, N,
                 RELU: tl.constexpr, KEEP_H: tl.constexpr, HAS_MASK: tl.constexpr, HAS_DY: tl.constexpr,
                 BLOCK: tl.constexpr):
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    ct = CARRY.dtype.element_ty
    dh = tl.load(DPROD + idx, mask=m, other=0.0).to(ct)
    if HAS_MASK:
        dh = dh * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
    dh += tl.load(CARRY + idx, mask=m, other=0.0).to(ct)
    if HAS_DY:
        dh += tl.load(DY + idx, mask=m, other=0.0).to(ct)
    carry = dh * 0.0
    if KEEP_H:
        carry = dh * tl.load(KH + idx, mask=m, other=0.0).to(ct)
        dh = dh - carry
    h = tl.load(ACT + idx, mask=m, other=0.0).to(ct)  # the activation's output: its derivative from it
    if RELU:
        da = tl.where(h > 0, dh, 0.0)
    else:
        da = dh * (1.0 - h * h)
    tl.store(DA + idx, da.to(DA.dtype.element_ty), mask=m)
    tl.store(CARRY + idx, carry.to(ct), mask=m)


@triton.jit
def mogrify_forward(Z, V, S, OUT, MASK, OUT2, N, WRITE2: tl.constexpr, HAS_MASK: tl.constexpr,
                    BLOCK: tl.constexpr):
    """One Mogrifier round on ``v`` (``x`` or ``h``): ``s = sigma(z)``, ``out = 2 s v`` (``z`` the
    round's product); with ``WRITE2`` also ``out`` (times ``mask`` with ``HAS_MASK``) in ``OUT2``'s
    dtype: the recurrent product's input."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    ct = OUT.dtype.element_ty
    s = sigmoid(tl.load(Z + idx, mask=m, other=0.0).to(ct))
    out = 2.0 * s * tl.load(V + idx, mask=m, other=0.0).to(ct)
    tl.store(S + idx, s.to(ct), mask=m)
    tl.store(OUT + idx, out, mask=m)
    if WRITE2:
        if HAS_MASK:
            out = out * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
        tl.store(OUT2 + idx, out.to(OUT2.dtype.element_ty), mask=m)


@triton.jit
def mogrify_backward(D, V, S, DZ, N, BLOCK: tl.constexpr):
    """A round read backwards: ``dz = d 2 v s (1 - s)`` (the product's gradient), ``d <- 2 s d``."""
    idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = idx < N
    ct = S.dtype.element_ty
    d = tl.load(D + idx, mask=m, other=0.0).to(ct)
    s = tl.load(S + idx, mask=m, other=0.0).to(ct)
    v = tl.load(V + idx, mask=m, other=0.0).to(ct)
    tl.store(DZ + idx, (d * 2.0 * v * s * (1.0 - s)).to(DZ.dtype.element_ty), mask=m)
    tl.store(D + idx, (d * 2.0 * s).to(D.dtype.element_ty), mask=m)
