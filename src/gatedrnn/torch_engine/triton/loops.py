"""The sequence loops of the LSTM family, the GRU and the Elman RNN around the Triton kernels.

    y, state_n, saved = FORWARD[family](plan, p, x, state, keep)
    grads, dstate0 = BACKWARD[family](plan, p, x, saved, dy, dstate)

The pattern of cuDNN and haste: the input product of all steps is one product before the loop
(every bias and ``forget_bias`` folded in); each step is one recurrent product (the step's input
pre-activations added by the product's kernel) and one elementwise kernel; the backward runs the
hand-derived BPTT in reverse, one product and one kernel per step, and every weight gradient is
one product over all steps after the loop. These functions allocate, launch and return tensors
and do nothing else (no host synchronisation, no branch on a tensor's values), so the same code
runs eagerly and inside a CUDA graph capture (``graphs.py``).

Precision: arithmetic in the state's dtype (float32; float64 on the interpreter); the products
in ``plan.product_dtype`` (the autocast dtype under ``torch.autocast``), whose outputs the
kernels read and cast up; the weight gradients come back in the parameters' dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton

from ...cells import Cell
from ...cells.base import LN_EPS
from ..products import rows
from .common import grid_for
from .gru_rnn_kernels import gru_backward, gru_forward, rnn_backward, rnn_forward
from .lstm_kernels import lstm_backward, lstm_forward


@dataclass(frozen=True)
class Plan:
    """Everything a loop's code depends on besides tensor shapes: part of a CUDA graph's key."""

    cell: Cell
    keep_h: bool  # a keep mask on h (zoneout, padding)
    keep_c: bool  # ... on c
    mask: bool  # state dropout: ``mask_hh`` multiplies the h that feeds the recurrent product
    product_dtype: torch.dtype
    need_dx: bool = True


def launch(kernel, n, *args, **consts):
    grid, block = grid_for(n)
    kernel[grid](*args, BLOCK=block, **consts)


def launch_rows(kernel, B, H, *args, **consts):
    """One program per row of ``B`` (a row reduction in the kernel: layer norm)."""
    kernel[(B,)](*args, BLOCK=triton.next_power_of_2(H), **consts)


def sum_rows(d, dtype):
    return rows(d).sum(0, dtype=dtype)


def keep_masks(keep, sizes, T, B, dtype):
    """The keep mask of each state element expanded to ``(T, B, size)`` (``None``: not mixed)."""
    keep = (None,) * len(sizes) if keep is None else tuple(keep)
    return tuple(None if k is None else k.to(dtype).expand(T, B, n).contiguous() for k, n in zip(keep, sizes))


def combined_bias(cell, p, G, H, like):
    """``bias_ih + bias_hh`` with ``forget_bias`` added to the forget block, or ``None``."""
    bias = p["bias_ih"] + p["bias_hh"] if cell.bias else None
    if getattr(cell, "forget_bias", 0.0):
        k = cell.gates.index("f")
        fb = like.new_zeros(G * H)
        fb[k * H : (k + 1) * H] = cell.forget_bias
        bias = fb if bias is None else bias + fb
    return bias


def input_forward(plan, p, x, bias, sdt):
    """``gx = x W_ih^T + bias`` for every step at once, ``(T, B, I) -> (T, B, N)``, in the product
    dtype; with layer norm ``LN(x W_ih^T) * ln_weight_ih + bias`` in the state dtype ``sdt``. Also
    what the backward needs (``None`` without layer norm)."""
    T, B, I = x.shape
    pdt = plan.product_dtype
    xs, wt = rows(x).to(pdt), p["weight_ih"].to(pdt).t()
    if not plan.cell.layer_norm:
        gx = torch.mm(xs, wt) if bias is None else torch.addmm(bias.to(pdt), xs, wt)
        return gx.view(T, B, -1), (None, None, None)
    ax = torch.mm(xs, wt).to(sdt)
    gx, mu, rstd = torch.native_layer_norm(ax, [ax.shape[-1]], p["ln_weight_ih"], bias, LN_EPS)
    return gx.view(T, B, -1), (ax, mu, rstd)


class RecurrentNorm:
    """The layer norm of each step's recurrent product ``r`` ``(B, N)``: ``LN(r) * ln_weight_hh
    (+ bias)``, keeping every step's ``r`` and statistics for the backward."""

    def __init__(self, p, T, B, N, like, bias=None, saved=None):
        self.w, self.bias, self.N = p["ln_weight_hh"], bias, N
        if saved is None:
            self.R, self.Mu, self.Rs = like.new_empty(T, B, N), like.new_empty(T, B, 1), like.new_empty(T, B, 1)
        else:
            self.R, self.Mu, self.Rs = saved

    def forward(self, r, t):
        self.R[t] = r
        out, self.Mu[t], self.Rs[t] = torch.native_layer_norm(self.R[t], [self.N], self.w, self.bias, LN_EPS)
        return out

    def backward(self, d, t):
        """``dL/dr`` from the gradient ``d`` of the step's normalised output."""
        return torch.ops.aten.native_layer_norm_backward(
            d, self.R[t], [self.N], self.Mu[t], self.Rs[t], self.w, None, [True, False, False])[0]

    def gain_grad(self, d_out):
        """``ln_weight_hh``'s gradient from every step's output gradient."""
        return (rows(d_out) * rows((self.R - self.Mu) * self.Rs)).sum(0)


def product_inputs(plan, p, h0, T):
    """The buffer of each step's recurrent product input ``h * mask_hh`` in the product dtype,
    or ``None`` where that is the state itself; slot 0 filled from ``h0``."""
    if not plan.mask and plan.product_dtype == h0.dtype:
        return None
    HP = h0.new_empty((T + 1, *h0.shape), dtype=plan.product_dtype)
    HP[0] = h0 * p["mask_hh"] if plan.mask else h0
    return HP


def products_grads(plan, p, x, d_in, d_rec, HPprev, in_saved, norm=None, d_prod=None):
    """Every gradient of the two products and what is added to them, one product per weight,
    from the gradients over all steps of the input pre-activations ``d_in`` and of the recurrent
    ones ``d_rec`` ``(T, B, N)`` (the same tensor where the two are summed: the LSTM family, the
    RNN), the recurrent products' inputs ``HPprev`` and, with layer norm, the gradient of the
    recurrent products themselves ``d_prod`` (``norm``: the ``RecurrentNorm``)."""
    pdt = plan.product_dtype
    d_prod = d_rec if d_prod is None else d_prod
    grads = {"weight_hh": torch.mm(rows(d_prod).t().to(pdt), rows(HPprev).to(pdt)).to(p["weight_hh"].dtype)}
    d = rows(d_in)
    ax, mu, rstd = in_saved
    if ax is not None:  # through the input's layer norm
        d, grads["ln_weight_ih"], _ = torch.ops.aten.native_layer_norm_backward(
            d.to(ax.dtype), ax, [ax.shape[-1]], mu, rstd, p["ln_weight_ih"], None, [True, True, False])
    grads["weight_ih"] = torch.mm(d.t().to(pdt), rows(x).to(pdt)).to(p["weight_ih"].dtype)
    if plan.need_dx:
        grads["x"] = torch.mm(d.to(pdt), p["weight_ih"].to(pdt)).view(x.shape).to(x.dtype)
    if plan.cell.bias:
        grads["bias_ih"] = sum_rows(d_in, p["bias_ih"].dtype)
        grads["bias_hh"] = grads["bias_ih"].clone() if d_rec is d_in else sum_rows(d_rec, p["bias_hh"].dtype)
    if norm is not None:
        grads["ln_bias_hh"] = sum_rows(d_rec, p["ln_bias_hh"].dtype)
        grads["ln_weight_hh"] = norm.gain_grad(d_rec).to(p["ln_weight_hh"].dtype)
    return grads


def start_backward(dstate, like):
    return tuple(torch.zeros_like(like) if d is None else d.to(like.dtype).clone() for d in dstate)


def finish_dh(plan, p, dprod, carry):
    """``dL/dh_0``: the first step's product, masked as in the forward, and the carried part."""
    dprod = dprod.to(carry.dtype)
    return carry + (dprod * p["mask_hh"] if plan.mask else dprod)


# -- the LSTM family ------------------------------------------------------------------------
def lstm_consts(cell):
    gates, peep = cell.gates, cell.peep_gates
    idx = lambda seq, name: seq.index(name) if name in seq else -1  # noqa: E731
    return dict(G=len(gates), I_IDX=idx(gates, "i"), F_IDX=idx(gates, "f"), G_IDX=idx(gates, "g"),
                O_IDX=idx(gates, "o"), COUPLED=bool(cell.coupled),
                HAS_I=bool(cell.coupled) or "i" in gates, PI=idx(peep, "i"), PF=idx(peep, "f"),
                PO=idx(peep, "o"), ACT_IN=cell.input_activation == "tanh", ACT_OUT=cell.output_activation == "tanh",
                LN_C=bool(cell.layer_norm), EPS=LN_EPS)


def summed_bias(cell, p, G, H, like):
    """Every constant added to the summed pre-activations (LSTM family, RNN), added once."""
    bias = combined_bias(cell, p, G, H, like)
    if cell.layer_norm:
        bias = p["ln_bias_hh"] if bias is None else bias + p["ln_bias_hh"]
    return bias


def lstm_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    ln = cell.layer_norm
    T, B, _ = x.shape
    G = cell.num_gates
    H = p["weight_hh"].shape[0] // G
    h0, c0 = state
    kh, kc = keep_masks(keep, (H, H), T, B, c0.dtype)
    gx, in_saved = input_forward(plan, p, x, summed_bias(cell, p, G, H, c0), c0.dtype)  # (T, B, G*H)
    w_hh_t = p["weight_hh"].to(pdt).t()
    Hs = c0.new_empty(T + 1, B, H)  # h_0 .. h_T after zoneout; y is Hs[1:]
    C = c0.new_empty(T + 1, B, H)  # c_0 .. c_T after zoneout
    Hs[0], C[0] = h0, c0
    Cn = c0.new_empty(T, B, H) if kc is not None else None  # the cell's c_t, before zoneout
    Gs = c0.new_empty(T, B, G * H)  # post-activation gates
    HP = product_inputs(plan, p, h0, T)
    A = c0.new_empty((B, G * H), dtype=c0.dtype if ln else pdt)
    norm = RecurrentNorm(p, T, B, G * H, c0) if ln else None
    CMu, CRs = (c0.new_empty(T, B) for _ in range(2)) if ln else (None, None)  # LN(c_t)'s statistics
    peep = p["weight_peephole"] if cell.peep_gates else A
    lnw, lnb = (p["ln_weight_c"], p["ln_bias_c"]) if ln else (A, A)
    mask = p["mask_hh"] if plan.mask else A
    hp = Hs if HP is None else HP
    consts = lstm_consts(cell)
    for t in range(T):
        if ln:
            torch.add(gx[t], norm.forward(torch.mm(hp[t], w_hh_t), t), out=A)
        else:
            torch.addmm(gx[t], hp[t], w_hh_t, out=A)
        (launch_rows if ln else launch)(
            lstm_forward, *((B, H) if ln else (B * H,)), A, C[t], Hs[t], A if kh is None else kh[t],
            A if kc is None else kc[t], mask, peep, lnw, lnb, Gs[t], A if Cn is None else Cn[t], Hs[t + 1], C[t + 1],
            A if HP is None else HP[t + 1], CMu[t] if ln else A, CRs[t] if ln else A, B * H, H,
            KEEP_H=kh is not None, KEEP_C=kc is not None, WRITE_HP=HP is not None, HAS_MASK=plan.mask, **consts)
    saved = {"Hs": Hs, "C": C, "Cn": Cn, "Gs": Gs, "HP": HP, "kh": kh, "kc": kc, **norm_saved(in_saved, norm),
             "CMu": CMu, "CRs": CRs}
    return Hs[1:], (Hs[T].clone(), C[T].clone()), saved


def norm_saved(in_saved, norm):
    ax, mu, rstd = in_saved
    R, RMu, RRs = (norm.R, norm.Mu, norm.Rs) if norm is not None else (None, None, None)
    return {"in_a": ax, "in_mu": mu, "in_rstd": rstd, "R": R, "RMu": RMu, "RRs": RRs}


NORM_KEYS = ("in_a", "in_mu", "in_rstd", "R", "RMu", "RRs")


def norm_from(plan, p, saved, bias=None):
    """The input's saved layer norm and the ``RecurrentNorm`` of the forward, from ``saved``."""
    in_saved = (saved["in_a"], saved["in_mu"], saved["in_rstd"])
    if not plan.cell.layer_norm:
        return in_saved, None
    R = saved["R"]
    return in_saved, RecurrentNorm(p, *R.shape, R, bias=bias, saved=(R, saved["RMu"], saved["RRs"]))


def lstm_backward_loop(plan, p, x, saved, dy, dstate):
    cell, pdt = plan.cell, plan.product_dtype
    ln = cell.layer_norm
    Hs, C, Gs, kh, kc = (saved[k] for k in ("Hs", "C", "Gs", "kh", "kc"))
    Cc = C[1:] if saved["Cn"] is None else saved["Cn"]  # the cell's c_t
    T, B, _ = x.shape
    G = cell.num_gates
    H = C.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    in_saved, norm = norm_from(plan, p, saved)
    carry, dc = start_backward(dstate, C[0])  # dL/dh_T, dL/dc_T
    dA = C.new_empty((T, B, G * H), dtype=C.dtype if ln else pdt)
    dR = C.new_empty(T, B, G * H) if ln else None  # the recurrent products' gradients, before LN
    dN = C.new_empty(T, B, H) if ln else None  # dL/d LN(c_t)
    dprod = C.new_zeros((B, H), dtype=pdt)  # dA_{t+1} W_hh
    peep = p["weight_peephole"] if cell.peep_gates else dA
    lnw, lnb = (p["ln_weight_c"], p["ln_bias_c"]) if ln else (dA, dA)
    mask = p["mask_hh"] if plan.mask else dA
    consts = lstm_consts(cell)
    for t in reversed(range(T)):
        (launch_rows if ln else launch)(
            lstm_backward, *((B, H) if ln else (B * H,)), dprod, mask, carry, dA if dy is None else dy[t], dc,
            Gs[t], C[t], Cc[t], dA if kh is None else kh[t], dA if kc is None else kc[t], peep, lnw, lnb,
            saved["CMu"][t] if ln else dA, saved["CRs"][t] if ln else dA, dA[t], dN[t] if ln else dA, B * H, H,
            KEEP_H=kh is not None, KEEP_C=kc is not None, HAS_MASK=plan.mask, HAS_DY=dy is not None, **consts)
        if ln:
            dR[t] = norm.backward(dA[t], t)
            torch.mm(dR[t].to(pdt), w_hh, out=dprod)
        else:
            torch.mm(dA[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dA, dA, HP[:-1], in_saved, norm, dR)
    if cell.peep_gates:
        d, sums = dA.to(C.dtype), []
        for name in cell.peep_gates:  # i and f look at c_{t-1}, o at the cell's c_t
            k = cell.gates.index(name)
            sums.append((d[..., k * H : (k + 1) * H] * (Cc if name == "o" else C[:-1])).sum((0, 1)))
        grads["weight_peephole"] = torch.cat(sums).to(p["weight_peephole"].dtype)
    if ln:
        c_hat = (Cc - saved["CMu"][..., None]) * saved["CRs"][..., None]
        grads["ln_weight_c"] = (rows(dN) * rows(c_hat)).sum(0).to(p["ln_weight_c"].dtype)
        grads["ln_bias_c"] = sum_rows(dN, p["ln_bias_c"].dtype)
    return grads, (finish_dh(plan, p, dprod, carry), dc)


# -- GRU ------------------------------------------------------------------------------------
def gru_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    ln = cell.layer_norm
    T, B, _ = x.shape
    H = p["weight_hh"].shape[0] // 3
    (h0,) = state
    (kh,) = keep_masks(keep, (H,), T, B, h0.dtype)
    gx, in_saved = input_forward(plan, p, x, p["bias_ih"] if cell.bias else None, h0.dtype)  # (T, B, 3H)
    w_hh_t = p["weight_hh"].to(pdt).t()
    b_hh = p["bias_hh"] if cell.bias else None  # stays in the recurrent product: its n block meets r
    if ln:
        b_hh = p["ln_bias_hh"] if b_hh is None else p["ln_bias_hh"] + b_hh
    norm = RecurrentNorm(p, T, B, 3 * H, h0, bias=b_hh) if ln else None
    b_hh = None if b_hh is None else b_hh.to(pdt)
    Hs = h0.new_empty(T + 1, B, H)
    Hs[0] = h0
    Gs, GHn = h0.new_empty(T, B, 3 * H), h0.new_empty(T, B, H)  # r, z, n; the recurrent n block
    HP = product_inputs(plan, p, h0, T)
    GH = h0.new_empty((B, 3 * H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else GH
    hp = Hs if HP is None else HP
    for t in range(T):
        if ln:
            gh = norm.forward(torch.mm(hp[t], w_hh_t), t)
        elif b_hh is None:
            gh = torch.mm(hp[t], w_hh_t, out=GH)
        else:
            gh = torch.addmm(b_hh, hp[t], w_hh_t, out=GH)
        launch(gru_forward, B * H, gx[t], gh, Hs[t], GH if kh is None else kh[t], mask, Gs[t], GHn[t], Hs[t + 1],
               GH if HP is None else HP[t + 1], B * H, H, KEEP_H=kh is not None, WRITE_HP=HP is not None,
               HAS_MASK=plan.mask)
    saved = {"Hs": Hs, "Gs": Gs, "GHn": GHn, "HP": HP, "kh": kh, **norm_saved(in_saved, norm)}
    return Hs[1:], (Hs[T].clone(),), saved


def gru_backward_loop(plan, p, x, saved, dy, dstate):
    pdt = plan.product_dtype
    ln = plan.cell.layer_norm
    Hs, Gs, GHn, kh = (saved[k] for k in ("Hs", "Gs", "GHn", "kh"))
    T, B, _ = x.shape
    H = Hs.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    in_saved, norm = norm_from(plan, p, saved)
    (carry,) = start_backward(dstate, Hs[0])
    dGX, dGH = (Hs.new_empty((T, B, 3 * H), dtype=Hs.dtype if ln else pdt) for _ in range(2))
    dR = Hs.new_empty(T, B, 3 * H) if ln else None
    dprod = Hs.new_zeros((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else dGX
    for t in reversed(range(T)):
        launch(gru_backward, B * H, dprod, mask, carry, dGX if dy is None else dy[t], Gs[t], GHn[t], Hs[t],
               dGX if kh is None else kh[t], dGX[t], dGH[t], B * H, H, KEEP_H=kh is not None,
               HAS_MASK=plan.mask, HAS_DY=dy is not None)
        if ln:
            dR[t] = norm.backward(dGH[t], t)
            torch.mm(dR[t].to(pdt), w_hh, out=dprod)
        else:
            torch.mm(dGH[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dGX, dGH, HP[:-1], in_saved, norm, dR)
    return grads, (finish_dh(plan, p, dprod, carry),)


# -- Elman RNN ------------------------------------------------------------------------------
def rnn_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    ln = cell.layer_norm
    T, B, _ = x.shape
    H = p["weight_hh"].shape[0]
    (h0,) = state
    (kh,) = keep_masks(keep, (H,), T, B, h0.dtype)
    gx, in_saved = input_forward(plan, p, x, summed_bias(cell, p, 1, H, h0), h0.dtype)
    w_hh_t = p["weight_hh"].to(pdt).t()
    Hs = h0.new_empty(T + 1, B, H)
    Hs[0] = h0
    Act = h0.new_empty(T, B, H) if kh is not None else None  # act(a_t) before zoneout
    HP = product_inputs(plan, p, h0, T)
    A = h0.new_empty((B, H), dtype=h0.dtype if ln else pdt)
    norm = RecurrentNorm(p, T, B, H, h0) if ln else None
    mask = p["mask_hh"] if plan.mask else A
    hp = Hs if HP is None else HP
    relu = cell.nonlinearity == "relu"
    for t in range(T):
        if ln:
            torch.add(gx[t], norm.forward(torch.mm(hp[t], w_hh_t), t), out=A)
        else:
            torch.addmm(gx[t], hp[t], w_hh_t, out=A)
        launch(rnn_forward, B * H, A, Hs[t], A if kh is None else kh[t], mask, A if Act is None else Act[t],
               Hs[t + 1], A if HP is None else HP[t + 1], B * H, RELU=relu, KEEP_H=kh is not None,
               WRITE_HP=HP is not None, HAS_MASK=plan.mask)
    saved = {"Hs": Hs, "Act": Act, "HP": HP, "kh": kh, **norm_saved(in_saved, norm)}
    return Hs[1:], (Hs[T].clone(),), saved


def rnn_backward_loop(plan, p, x, saved, dy, dstate):
    pdt = plan.product_dtype
    ln = plan.cell.layer_norm
    Hs, kh = saved["Hs"], saved["kh"]
    Act = Hs[1:] if saved["Act"] is None else saved["Act"]
    T, B, _ = x.shape
    H = Hs.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    in_saved, norm = norm_from(plan, p, saved)
    (carry,) = start_backward(dstate, Hs[0])
    dA = Hs.new_empty((T, B, H), dtype=Hs.dtype if ln else pdt)
    dR = Hs.new_empty(T, B, H) if ln else None
    dprod = Hs.new_zeros((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else dA
    relu = plan.cell.nonlinearity == "relu"
    for t in reversed(range(T)):
        launch(rnn_backward, B * H, dprod, mask, carry, dA if dy is None else dy[t], Act[t],
               dA if kh is None else kh[t], dA[t], B * H, RELU=relu, KEEP_H=kh is not None,
               HAS_MASK=plan.mask, HAS_DY=dy is not None)
        if ln:
            dR[t] = norm.backward(dA[t], t)
            torch.mm(dR[t].to(pdt), w_hh, out=dprod)
        else:
            torch.mm(dA[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dA, dA, HP[:-1], in_saved, norm, dR)
    return grads, (finish_dh(plan, p, dprod, carry),)
