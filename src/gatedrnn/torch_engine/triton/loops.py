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

from ...cells import Cell
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


def rows(a):
    return a.reshape(-1, a.shape[-1])


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


def input_products(x, w, bias, pdt):
    """``x W^T + bias`` for every step at once: ``(T, B, I) -> (T, B, N)`` in ``pdt``."""
    T, B, I = x.shape
    xs, wt = rows(x).to(pdt), w.to(pdt).t()
    gx = torch.mm(xs, wt) if bias is None else torch.addmm(bias.to(pdt), xs, wt)
    return gx.view(T, B, -1)


def product_inputs(plan, p, h0, T):
    """The buffer of each step's recurrent product input ``h * mask_hh`` in the product dtype,
    or ``None`` where that is the state itself; slot 0 filled from ``h0``."""
    if not plan.mask and plan.product_dtype == h0.dtype:
        return None
    HP = h0.new_empty((T + 1, *h0.shape), dtype=plan.product_dtype)
    HP[0] = h0 * p["mask_hh"] if plan.mask else h0
    return HP


def products_grads(plan, p, x, dA, HPprev, dR=None):
    """Gradients of ``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``, one product per weight, from the
    gradients of their outputs over all steps, ``dA`` and ``dR`` ``(T, B, N)`` (``dR = dA`` where
    the two are summed: the LSTM family, the RNN), and the recurrent products' inputs ``HPprev``."""
    pdt = plan.product_dtype
    dR = dA if dR is None else dR
    d = rows(dA)
    grads = {
        "weight_hh": torch.mm(rows(dR).t(), rows(HPprev).to(pdt)).to(p["weight_hh"].dtype),
        "weight_ih": torch.mm(d.t(), rows(x).to(pdt)).to(p["weight_ih"].dtype),
    }
    if plan.cell.bias:
        grads["bias_ih"] = sum_rows(dA, p["bias_ih"].dtype)
        grads["bias_hh"] = grads["bias_ih"].clone() if dR is dA else sum_rows(dR, p["bias_hh"].dtype)
    if plan.need_dx:
        grads["x"] = torch.mm(d, p["weight_ih"].to(pdt)).view(x.shape).to(x.dtype)
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
                PO=idx(peep, "o"), ACT_IN=cell.input_activation == "tanh", ACT_OUT=cell.output_activation == "tanh")


def lstm_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    T, B, _ = x.shape
    G = cell.num_gates
    H = p["weight_hh"].shape[0] // G
    h0, c0 = state
    kh, kc = keep_masks(keep, (H, H), T, B, c0.dtype)
    gx = input_products(x, p["weight_ih"], combined_bias(cell, p, G, H, c0), pdt)  # (T, B, G*H)
    w_hh_t = p["weight_hh"].to(pdt).t()
    Hs = c0.new_empty(T + 1, B, H)  # h_0 .. h_T after zoneout; y is Hs[1:]
    C = c0.new_empty(T + 1, B, H)  # c_0 .. c_T after zoneout
    Hs[0], C[0] = h0, c0
    Cn = c0.new_empty(T, B, H) if kc is not None else None  # the cell's c_t, before zoneout
    Gs = c0.new_empty(T, B, G * H)  # post-activation gates
    HP = product_inputs(plan, p, h0, T)
    A = c0.new_empty((B, G * H), dtype=pdt)
    peep = p["weight_peephole"] if cell.peep_gates else A
    mask = p["mask_hh"] if plan.mask else A
    hp = Hs if HP is None else HP
    consts = lstm_consts(cell)
    for t in range(T):
        torch.addmm(gx[t], hp[t], w_hh_t, out=A)
        launch(lstm_forward, B * H, A, C[t], Hs[t], A if kh is None else kh[t], A if kc is None else kc[t],
               mask, peep, Gs[t], A if Cn is None else Cn[t], Hs[t + 1], C[t + 1], A if HP is None else HP[t + 1],
               B * H, H, KEEP_H=kh is not None, KEEP_C=kc is not None, WRITE_HP=HP is not None,
               HAS_MASK=plan.mask, **consts)
    saved = {"Hs": Hs, "C": C, "Cn": Cn, "Gs": Gs, "HP": HP, "kh": kh, "kc": kc}
    return Hs[1:], (Hs[T].clone(), C[T].clone()), saved


def lstm_backward_loop(plan, p, x, saved, dy, dstate):
    cell, pdt = plan.cell, plan.product_dtype
    Hs, C, Gs, kh, kc = (saved[k] for k in ("Hs", "C", "Gs", "kh", "kc"))
    Cc = C[1:] if saved["Cn"] is None else saved["Cn"]  # the cell's c_t
    T, B, _ = x.shape
    G = cell.num_gates
    H = C.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    carry, dc = start_backward(dstate, C[0])  # dL/dh_T, dL/dc_T
    dA = C.new_empty((T, B, G * H), dtype=pdt)
    dprod = C.new_zeros((B, H), dtype=pdt)  # dA_{t+1} W_hh
    peep = p["weight_peephole"] if cell.peep_gates else dA
    mask = p["mask_hh"] if plan.mask else dA
    consts = lstm_consts(cell)
    for t in reversed(range(T)):
        launch(lstm_backward, B * H, dprod, mask, carry, dA if dy is None else dy[t], dc, Gs[t], C[t], Cc[t],
               dA if kh is None else kh[t], dA if kc is None else kc[t], peep, dA[t], B * H, H,
               KEEP_H=kh is not None, KEEP_C=kc is not None, HAS_MASK=plan.mask, HAS_DY=dy is not None, **consts)
        torch.mm(dA[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dA, HP[:-1])
    if cell.peep_gates:
        d, sums = dA.to(C.dtype), []
        for name in cell.peep_gates:  # i and f look at c_{t-1}, o at the cell's c_t
            k = cell.gates.index(name)
            sums.append((d[..., k * H : (k + 1) * H] * (Cc if name == "o" else C[:-1])).sum((0, 1)))
        grads["weight_peephole"] = torch.cat(sums).to(p["weight_peephole"].dtype)
    return grads, (finish_dh(plan, p, dprod, carry), dc)


# -- GRU ------------------------------------------------------------------------------------
def gru_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    T, B, _ = x.shape
    H = p["weight_hh"].shape[0] // 3
    (h0,) = state
    (kh,) = keep_masks(keep, (H,), T, B, h0.dtype)
    gx = input_products(x, p["weight_ih"], p["bias_ih"] if cell.bias else None, pdt)  # (T, B, 3H)
    w_hh_t = p["weight_hh"].to(pdt).t()
    b_hh = p["bias_hh"].to(pdt) if cell.bias else None  # stays in the recurrent product: its n block meets r
    Hs = h0.new_empty(T + 1, B, H)
    Hs[0] = h0
    Gs, GHn = h0.new_empty(T, B, 3 * H), h0.new_empty(T, B, H)  # r, z, n; the recurrent n block
    HP = product_inputs(plan, p, h0, T)
    GH = h0.new_empty((B, 3 * H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else GH
    hp = Hs if HP is None else HP
    for t in range(T):
        if b_hh is None:
            torch.mm(hp[t], w_hh_t, out=GH)
        else:
            torch.addmm(b_hh, hp[t], w_hh_t, out=GH)
        launch(gru_forward, B * H, gx[t], GH, Hs[t], GH if kh is None else kh[t], mask, Gs[t], GHn[t], Hs[t + 1],
               GH if HP is None else HP[t + 1], B * H, H, KEEP_H=kh is not None, WRITE_HP=HP is not None,
               HAS_MASK=plan.mask)
    saved = {"Hs": Hs, "Gs": Gs, "GHn": GHn, "HP": HP, "kh": kh}
    return Hs[1:], (Hs[T].clone(),), saved


def gru_backward_loop(plan, p, x, saved, dy, dstate):
    pdt = plan.product_dtype
    Hs, Gs, GHn, kh = (saved[k] for k in ("Hs", "Gs", "GHn", "kh"))
    T, B, _ = x.shape
    H = Hs.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    (carry,) = start_backward(dstate, Hs[0])
    dGX, dGH = (Hs.new_empty((T, B, 3 * H), dtype=pdt) for _ in range(2))
    dprod = Hs.new_zeros((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else dGX
    for t in reversed(range(T)):
        launch(gru_backward, B * H, dprod, mask, carry, dGX if dy is None else dy[t], Gs[t], GHn[t], Hs[t],
               dGX if kh is None else kh[t], dGX[t], dGH[t], B * H, H, KEEP_H=kh is not None,
               HAS_MASK=plan.mask, HAS_DY=dy is not None)
        torch.mm(dGH[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dGX, HP[:-1], dGH)
    return grads, (finish_dh(plan, p, dprod, carry),)


# -- Elman RNN ------------------------------------------------------------------------------
def rnn_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    T, B, _ = x.shape
    H = p["weight_hh"].shape[0]
    (h0,) = state
    (kh,) = keep_masks(keep, (H,), T, B, h0.dtype)
    gx = input_products(x, p["weight_ih"], combined_bias(cell, p, 1, H, h0), pdt)
    w_hh_t = p["weight_hh"].to(pdt).t()
    Hs = h0.new_empty(T + 1, B, H)
    Hs[0] = h0
    Act = h0.new_empty(T, B, H) if kh is not None else None  # act(a_t) before zoneout
    HP = product_inputs(plan, p, h0, T)
    A = h0.new_empty((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else A
    hp = Hs if HP is None else HP
    relu = cell.nonlinearity == "relu"
    for t in range(T):
        torch.addmm(gx[t], hp[t], w_hh_t, out=A)
        launch(rnn_forward, B * H, A, Hs[t], A if kh is None else kh[t], mask, A if Act is None else Act[t],
               Hs[t + 1], A if HP is None else HP[t + 1], B * H, RELU=relu, KEEP_H=kh is not None,
               WRITE_HP=HP is not None, HAS_MASK=plan.mask)
    saved = {"Hs": Hs, "Act": Act, "HP": HP, "kh": kh}
    return Hs[1:], (Hs[T].clone(),), saved


def rnn_backward_loop(plan, p, x, saved, dy, dstate):
    pdt = plan.product_dtype
    Hs, kh = saved["Hs"], saved["kh"]
    Act = Hs[1:] if saved["Act"] is None else saved["Act"]
    T, B, _ = x.shape
    H = Hs.shape[-1]
    w_hh = p["weight_hh"].to(pdt)
    (carry,) = start_backward(dstate, Hs[0])
    dA = Hs.new_empty((T, B, H), dtype=pdt)
    dprod = Hs.new_zeros((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else dA
    relu = plan.cell.nonlinearity == "relu"
    for t in reversed(range(T)):
        launch(rnn_backward, B * H, dprod, mask, carry, dA if dy is None else dy[t], Act[t],
               dA if kh is None else kh[t], dA[t], B * H, RELU=relu, KEEP_H=kh is not None,
               HAS_MASK=plan.mask, HAS_DY=dy is not None)
        torch.mm(dA[t], w_hh, out=dprod)
    HP = Hs if saved["HP"] is None else saved["HP"]
    grads = products_grads(plan, p, x, dA, HP[:-1])
    return grads, (finish_dh(plan, p, dprod, carry),)
