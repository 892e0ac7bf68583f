"""The LSTM family's step (``lstm``, ``peephole``, ``cifg``, ``forget_bias``, dropped gates,
identity activations, zoneout, state dropout), forward and backward, each one Triton kernel.

Gate block indices (``I_IDX`` .. ``O_IDX``, ``-1`` for a dropped gate; ``HAS_I``: an input gate,
its own or CIFG's ``1 - f``) and peephole indices (``PI`` .. ``PO``, ``-1`` without one) are
compile-time constants, so each configuration compiles
to straight-line code without the branches of the others.

Forward, per step ``t``; reads ``a`` ``(B, G*H)`` (both products and every bias, ``forget_bias``
folded in), ``c_{t-1}`` (and ``h_{t-1}``, the keep masks of step ``t`` with zoneout, the state
dropout mask); writes the post-activation gates ``(B, G*H)`` (saved), the cell's ``c_t`` before
zoneout (saved, with zoneout on ``c``), the state ``h_t, c_t`` after zoneout, and the next
recurrent product's input ``h_t * mask`` in the product dtype.

With layer norm on ``c_t`` (``LN_C``) each program takes one row of the batch, whose mean and
``1/std`` the forward writes (saved) and the backward reads; the backward also writes ``dL/dn_t``
for the gains' gradients.

Backward, per step ``t``, in reverse; reads the saved gates, ``c_{t-1}``, the cell's ``c_t``, the
recurrent product ``dA_{t+1} W_hh`` of the step after (raw: the mask is applied here), the
carried gradient that bypasses that product, ``dy_t``, ``dL/dc_t``; writes ``dA_t`` ``(B, G*H)``
(the gradient of ``a``: saved for the weight gradients after the loop, and the next product's
input), ``dL/dc_{t-1}`` in place and the carried gradient for ``h_{t-1}`` (zoneout's kept share).
"""
from __future__ import annotations

import triton
import triton.language as tl

from .common import mix, row_sum, sigmoid, tanh


@triton.jit
def lstm_forward(A, C_PREV, H_PREV, KH, KC, MASK, PEEP, LNW, LNB,
                 GATES, C_CELL, H_OUT, C_OUT, HP, CMU, CRS,
                 N, H,
                 G: tl.constexpr, I_IDX: tl.constexpr, F_IDX: tl.constexpr, G_IDX: tl.constexpr,
                 O_IDX: tl.constexpr, COUPLED: tl.constexpr, HAS_I: tl.constexpr, PI: tl.constexpr, PF: tl.constexpr,
                 PO: tl.constexpr, ACT_IN: tl.constexpr, ACT_OUT: tl.constexpr,
                 KEEP_H: tl.constexpr, KEEP_C: tl.constexpr, WRITE_HP: tl.constexpr,
                 HAS_MASK: tl.constexpr, LN_C: tl.constexpr, EPS: tl.constexpr, BLOCK: tl.constexpr):
    if LN_C:  # one program per row of B: the layer norm of c_t needs the whole row
        row = tl.program_id(0)
        col = tl.arange(0, BLOCK)
        m = col < H
        idx = row * H + col
    else:
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = idx < N
        row = idx // H
        col = idx % H
    ga = A + row * (G * H) + col
    gs = GATES + row * (G * H) + col
    ct = C_PREV.dtype.element_ty
    gt = GATES.dtype.element_ty
    cp = tl.load(C_PREV + idx, mask=m, other=0.0).to(ct)
    if F_IDX >= 0:
        af = tl.load(ga + F_IDX * H, mask=m, other=0.0).to(ct)
        if PF >= 0:
            af += tl.load(PEEP + PF * H + col, mask=m, other=0.0).to(ct) * cp
        f = sigmoid(af)
        tl.store(gs + F_IDX * H, f.to(gt), mask=m)
    if COUPLED:
        i = 1.0 - f
    elif I_IDX >= 0:
        ai = tl.load(ga + I_IDX * H, mask=m, other=0.0).to(ct)
        if PI >= 0:
            ai += tl.load(PEEP + PI * H + col, mask=m, other=0.0).to(ct) * cp
        i = sigmoid(ai)
        tl.store(gs + I_IDX * H, i.to(gt), mask=m)
    g = tl.load(ga + G_IDX * H, mask=m, other=0.0).to(ct)
    if ACT_IN:
        g = tanh(g)
    tl.store(gs + G_IDX * H, g.to(gt), mask=m)
    if F_IDX >= 0:
        c = f * cp
    else:
        c = cp
    if HAS_I:
        c += i * g
    else:
        c += g
    n = c
    if LN_C:  # n_t = LN(c_t) * ln_weight_c + ln_bias_c; its statistics saved per row
        mu = row_sum(tl.where(m, c, 0.0)) / H
        centred = tl.where(m, c - mu, 0.0)
        rstd = 1.0 / tl.sqrt(row_sum(centred * centred) / H + EPS)
        n = centred * rstd * tl.load(LNW + col, mask=m, other=0.0).to(ct) + tl.load(LNB + col, mask=m, other=0.0).to(ct)
        tl.store(CMU + row, mu.to(ct))
        tl.store(CRS + row, rstd.to(ct))
    tc = n
    if ACT_OUT:
        tc = tanh(n)
    h = tc
    if O_IDX >= 0:
        ao = tl.load(ga + O_IDX * H, mask=m, other=0.0).to(ct)
        if PO >= 0:  # the output gate looks at the cell's c_t
            ao += tl.load(PEEP + PO * H + col, mask=m, other=0.0).to(ct) * c
        o = sigmoid(ao)
        tl.store(gs + O_IDX * H, o.to(gt), mask=m)
        h = o * tc
    if KEEP_C:
        tl.store(C_CELL + idx, c.to(ct), mask=m)
        c = mix(c, cp, tl.load(KC + idx, mask=m, other=0.0).to(ct))
    tl.store(C_OUT + idx, c.to(ct), mask=m)
    if KEEP_H:
        hp = tl.load(H_PREV + idx, mask=m, other=0.0).to(ct)
        h = mix(h, hp, tl.load(KH + idx, mask=m, other=0.0).to(ct))
    tl.store(H_OUT + idx, h.to(H_OUT.dtype.element_ty), mask=m)
    if WRITE_HP:
        if HAS_MASK:
            h = h * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
        tl.store(HP + idx, h.to(HP.dtype.element_ty), mask=m)


@triton.jit
def lstm_backward(DPROD, MASK, CARRY, DY, DC, GATES, C_PREV, C_CELL, KH, KC, PEEP, LNW, LNB, CMU, CRS, DA, DN,
                  N, H,
                  G: tl.constexpr, I_IDX: tl.constexpr, F_IDX: tl.constexpr, G_IDX: tl.constexpr,
                  O_IDX: tl.constexpr, COUPLED: tl.constexpr, HAS_I: tl.constexpr, PI: tl.constexpr, PF: tl.constexpr,
                  PO: tl.constexpr, ACT_IN: tl.constexpr, ACT_OUT: tl.constexpr,
                  KEEP_H: tl.constexpr, KEEP_C: tl.constexpr, HAS_MASK: tl.constexpr,
                  HAS_DY: tl.constexpr, LN_C: tl.constexpr, EPS: tl.constexpr, BLOCK: tl.constexpr):
    if LN_C:  # one program per row of B: the layer norm of c_t needs the whole row
        row = tl.program_id(0)
        col = tl.arange(0, BLOCK)
        m = col < H
        idx = row * H + col
    else:
        idx = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = idx < N
        row = idx // H
        col = idx % H
    gs = GATES + row * (G * H) + col
    da = DA + row * (G * H) + col
    ct = DC.dtype.element_ty
    dt = DA.dtype.element_ty
    # dL/dh_t: through the next step's recurrent product (masked), carried, and from y_t
    dh = tl.load(DPROD + idx, mask=m, other=0.0).to(ct)
    if HAS_MASK:
        dh = dh * tl.load(MASK + idx, mask=m, other=0.0).to(ct)
    dh += tl.load(CARRY + idx, mask=m, other=0.0).to(ct)
    if HAS_DY:
        dh += tl.load(DY + idx, mask=m, other=0.0).to(ct)
    carry = dh * 0.0
    if KEEP_H:  # zoneout: the kept share goes straight to h_{t-1}
        kh = tl.load(KH + idx, mask=m, other=0.0).to(ct)
        carry = dh * kh
        dh = dh - carry
    dc = tl.load(DC + idx, mask=m, other=0.0).to(ct)
    if KEEP_C:
        kc = tl.load(KC + idx, mask=m, other=0.0).to(ct)
        carry_c = dc * kc
        dc = dc - carry_c
    c = tl.load(C_CELL + idx, mask=m, other=0.0).to(ct)
    cp = tl.load(C_PREV + idx, mask=m, other=0.0).to(ct)
    n = c
    if LN_C:
        c_hat = tl.where(m, (c - tl.load(CMU + row).to(ct)) * tl.load(CRS + row).to(ct), 0.0)
        w_c = tl.load(LNW + col, mask=m, other=0.0).to(ct)
        n = c_hat * w_c + tl.load(LNB + col, mask=m, other=0.0).to(ct)
    tc = n
    if ACT_OUT:
        tc = tanh(n)
    dtc = dh
    if O_IDX >= 0:
        o = tl.load(gs + O_IDX * H, mask=m, other=0.0).to(ct)
        da_o = dh * tc * o * (1.0 - o)
        tl.store(da + O_IDX * H, da_o.to(dt), mask=m)
        dtc = dh * o
    dn = dtc
    if ACT_OUT:
        dn = dtc * (1.0 - tc * tc)
    if LN_C:  # through n = LN(c) w + b: the row's two means; dL/dn saved for the gains
        tl.store(DN + idx, dn.to(DN.dtype.element_ty), mask=m)
        d_hat = tl.where(m, dn * w_c, 0.0)
        mean_d = row_sum(d_hat) / H
        mean_dc = row_sum(d_hat * c_hat) / H
        dc += tl.load(CRS + row).to(ct) * (d_hat - mean_d - c_hat * mean_dc)
    else:
        dc += dn
    if PO >= 0:
        dc += da_o * tl.load(PEEP + PO * H + col, mask=m, other=0.0).to(ct)
    g = tl.load(gs + G_IDX * H, mask=m, other=0.0).to(ct)
    dc_prev = dc
    if F_IDX >= 0:
        f = tl.load(gs + F_IDX * H, mask=m, other=0.0).to(ct)
        dc_prev = dc * f
    if COUPLED:
        i = 1.0 - f
    elif I_IDX >= 0:
        i = tl.load(gs + I_IDX * H, mask=m, other=0.0).to(ct)
    dg = dc
    if HAS_I:
        dg = dc * i
        di = dc * g
    if ACT_IN:
        dg = dg * (1.0 - g * g)
    tl.store(da + G_IDX * H, dg.to(dt), mask=m)
    if F_IDX >= 0:
        df = dc * cp
        if COUPLED:
            df -= di  # i = 1 - f
        da_f = df * f * (1.0 - f)
        tl.store(da + F_IDX * H, da_f.to(dt), mask=m)
        if PF >= 0:
            dc_prev += da_f * tl.load(PEEP + PF * H + col, mask=m, other=0.0).to(ct)
    if I_IDX >= 0:  # (CIFG has no i block: I_IDX < 0)
        da_i = di * i * (1.0 - i)
        tl.store(da + I_IDX * H, da_i.to(dt), mask=m)
        if PI >= 0:
            dc_prev += da_i * tl.load(PEEP + PI * H + col, mask=m, other=0.0).to(ct)
    if KEEP_C:
        dc_prev += carry_c
    tl.store(DC + idx, dc_prev.to(ct), mask=m)
    tl.store(CARRY + idx, carry.to(CARRY.dtype.element_ty), mask=m)
