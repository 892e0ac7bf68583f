"""The Mogrifier LSTM (``rounds >= 1``) around the Triton kernels: each round is a product on
cuBLAS and one ``mogrify_forward`` kernel (``s = sigma(z)``, ``v <- 2 s v``), then the step's two
products and the LSTM kernel; the backward reads it in reverse with ``mogrify_backward`` and
computes every weight gradient (``W_ih``, ``W_hh``, each round's ``Q_k`` / ``R_k``) as one
product over all steps after the loop.

Per step ``t``: ``x^(k)`` is ``x`` after ``k`` odd rounds (``x^(0) = x_t``, the rest in
``Xm[t, k-1]``), ``h^(k)`` is ``h`` after ``k`` even rounds (``h^(0) = h_{t-1}``, the rest in
``Hm[t, k-1]``); ``SQ``/``SR`` hold each round's gate ``s``. Odd round ``j`` (``k = (j-1)//2``)
reads ``x^(k), h^(k)``; even round ``j`` (``k = j//2 - 1``) reads ``x^(k+1), h^(k)``. Only the
recurrent product sees state dropout's mask: ``HM[t]`` is the step's mogrified ``h`` times the
mask, in the product dtype (written by the last even round's kernel, or, with one round, by the
previous step's LSTM kernel).
"""
from __future__ import annotations

import torch

from .gru_rnn_kernels import mogrify_backward, mogrify_forward
from ..products import rows
from .loops import combined_bias, keep_masks, launch, lstm_consts, start_backward, sum_rows
from .lstm_kernels import lstm_backward, lstm_forward


def matrices(cell, p, name, n, dtype):
    """``Q_k`` ``(I, R)`` / ``R_k`` ``(R, I)`` for ``k < n``, products of factors with ``rank``."""
    if cell.rank is None:
        return [p[f"weight_{name}"][k].to(dtype) for k in range(n)]
    return [(p[f"weight_{name}_left"][k] @ p[f"weight_{name}_right"][k]).to(dtype) for k in range(n)]


def addmm_into(out, a, b):
    """``out += a @ b``; under autocast ``a @ b`` is half precision and ``out`` float32."""
    if out.dtype == a.dtype:
        out.addmm_(a, b)
    else:
        out.add_(a @ b)


def mogrifier_forward_loop(plan, p, x, state, keep):
    cell, pdt = plan.cell, plan.product_dtype
    T, B, I = x.shape
    H = p["weight_hh"].shape[0] // 4
    nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
    h0, c0 = state
    sdt = c0.dtype
    kh, kc = keep_masks(keep, (H, H), T, B, sdt)
    bias = combined_bias(cell, p, 4, H, c0)
    bias = None if bias is None else bias.to(pdt)
    w_ih_t, w_hh_t = p["weight_ih"].to(pdt).t(), p["weight_hh"].to(pdt).t()
    Qt = [q.t() for q in matrices(cell, p, "q", nq, pdt)]  # h @ Q_k^T
    Rt = [r.t() for r in matrices(cell, p, "r", nr, pdt)]  # x @ R_k^T
    Hs, C = c0.new_empty(T + 1, B, H), c0.new_empty(T + 1, B, H)
    Hs[0], C[0] = h0, c0
    Cn = c0.new_empty(T, B, H) if kc is not None else None
    Gs = c0.new_empty(T, B, 4 * H)
    Xm, SQ = c0.new_empty(T, nq, B, I), c0.new_empty(T, nq, B, I)
    Hm, SR = c0.new_empty(T, max(nr, 1), B, H), c0.new_empty(T, max(nr, 1), B, H)
    need_hm = plan.mask or pdt != sdt
    HM = c0.new_empty((T + 1, B, H), dtype=pdt) if need_hm else None
    if need_hm and nr == 0:  # one round: h^(0) = h_{t-1} feeds the product, written by the step before
        HM[0] = h0 * p["mask_hh"] if plan.mask else h0
    A = c0.new_empty((B, 4 * H), dtype=pdt)
    Zx, Zh = c0.new_empty((B, I), dtype=pdt), c0.new_empty((B, H), dtype=pdt)
    mask = p["mask_hh"] if plan.mask else A
    consts = lstm_consts(cell)
    for t in range(T):
        xk, hk = x[t], Hs[t]
        for j in range(1, cell.rounds + 1):
            if j % 2:
                k = (j - 1) // 2
                torch.mm(hk.to(pdt), Qt[k], out=Zx)
                launch(mogrify_forward, B * I, Zx, xk, SQ[t, k], Xm[t, k], A, A, B * I, WRITE2=False, HAS_MASK=False)
                xk = Xm[t, k]
            else:
                k = j // 2 - 1
                torch.mm(xk.to(pdt), Rt[k], out=Zh)
                last = need_hm and k == nr - 1
                launch(mogrify_forward, B * H, Zh, hk, SR[t, k], Hm[t, k], mask, HM[t] if last else A, B * H,
                       WRITE2=last, HAS_MASK=plan.mask)
                hk = Hm[t, k]
        hm = HM[t] if need_hm else hk
        if bias is None:
            torch.mm(xk.to(pdt), w_ih_t, out=A)
        else:
            torch.addmm(bias, xk.to(pdt), w_ih_t, out=A)
        addmm_into(A, hm, w_hh_t)
        write_hp = need_hm and nr == 0
        launch(lstm_forward, B * H, A, C[t], Hs[t], A if kh is None else kh[t], A if kc is None else kc[t],
               mask, A, A, A, Gs[t], A if Cn is None else Cn[t], Hs[t + 1], C[t + 1], HM[t + 1] if write_hp else A,
               A, A, B * H, H, KEEP_H=kh is not None, KEEP_C=kc is not None, WRITE_HP=write_hp,
               HAS_MASK=plan.mask, **consts)
    saved = {"Hs": Hs, "C": C, "Cn": Cn, "Gs": Gs, "Xm": Xm, "SQ": SQ, "Hm": Hm, "SR": SR, "HM": HM,
             "kh": kh, "kc": kc}
    return Hs[1:], (Hs[T].clone(), C[T].clone()), saved


def mogrifier_backward_loop(plan, p, x, saved, dy, dstate):
    cell, pdt = plan.cell, plan.product_dtype
    Hs, C, Gs, Xm, SQ, Hm, SR, HM, kh, kc = (saved[k] for k in ("Hs", "C", "Gs", "Xm", "SQ", "Hm", "SR", "HM",
                                                                 "kh", "kc"))
    Cc = C[1:] if saved["Cn"] is None else saved["Cn"]
    T, B, I = x.shape
    H = C.shape[-1]
    sdt = C.dtype
    nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
    w_ih, w_hh = p["weight_ih"].to(pdt), p["weight_hh"].to(pdt)
    Qs, Rs = matrices(cell, p, "q", nq, pdt), matrices(cell, p, "r", nr, pdt)
    carry, dc = start_backward(dstate, C[0])
    dA = C.new_empty((T, B, 4 * H), dtype=pdt)
    dZQ, dZR = C.new_empty((T, nq, B, I), dtype=pdt), C.new_empty((T, max(nr, 1), B, H), dtype=pdt)
    dX = C.new_empty(T, B, I)
    dh_next = C.new_zeros(B, H)  # dL/dh_t through step t+1 (its product and rounds)
    X_at = lambda t, k: x[t] if k == 0 else Xm[t, k - 1]  # noqa: E731
    H_at = lambda t, k: Hs[t] if k == 0 else Hm[t, k - 1]  # noqa: E731
    consts = lstm_consts(cell)
    for t in reversed(range(T)):
        launch(lstm_backward, B * H, dh_next, dA, carry, dA if dy is None else dy[t], dc, Gs[t], C[t], Cc[t],
               dA if kh is None else kh[t], dA if kc is None else kc[t], dA, dA, dA, dA, dA, dA[t], dA, B * H, H,
               KEEP_H=kh is not None, KEEP_C=kc is not None, HAS_MASK=False, HAS_DY=dy is not None, **consts)
        dx = (dA[t] @ w_ih).to(sdt)  # (B, I)
        dh = (dA[t] @ w_hh).to(sdt)  # (B, H)
        if plan.mask:
            dh.mul_(p["mask_hh"])
        for j in range(cell.rounds, 0, -1):
            if j % 2:  # x^(k+1) = 2 s x^(k), s = sigma(h^(k) Q_k^T)
                k = (j - 1) // 2
                launch(mogrify_backward, B * I, dx, X_at(t, k), SQ[t, k], dZQ[t, k], B * I)
                addmm_into(dh, dZQ[t, k], Qs[k])
            else:  # h^(k+1) = 2 s h^(k), s = sigma(x^(k+1) R_k^T)
                k = j // 2 - 1
                launch(mogrify_backward, B * H, dh, H_at(t, k), SR[t, k], dZR[t, k], B * H)
                addmm_into(dx, dZR[t, k], Rs[k])
        dX[t] = dx
        dh_next = dh
    grads = mogrifier_weight_grads(plan, p, x, saved, dA, dZQ, dZR)
    grads["x"] = dX.to(x.dtype)
    return grads, (carry + dh_next, dc)  # dh_next: through step 0's product (masked) and rounds


def mogrifier_weight_grads(plan, p, x, saved, dA, dZQ, dZR):
    cell, pdt = plan.cell, plan.product_dtype
    Hs, Xm, Hm, HM = saved["Hs"], saved["Xm"], saved["Hm"], saved["HM"]
    nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
    d = rows(dA).t()
    x_last = Xm[:, nq - 1]  # the x each step's input product read
    h_last = HM[:-1] if HM is not None else (Hs[:-1] if nr == 0 else Hm[:, nr - 1])
    grads = {"weight_ih": torch.mm(d, rows(x_last).to(pdt)).to(p["weight_ih"].dtype),
             "weight_hh": torch.mm(d, rows(h_last).to(pdt)).to(p["weight_hh"].dtype)}
    if cell.bias:
        grads["bias_ih"] = sum_rows(dA, p["bias_ih"].dtype)
        grads["bias_hh"] = grads["bias_ih"].clone()
    per = {"q": [torch.mm(rows(dZQ[:, k]).t(), rows(Hs[:-1] if k == 0 else Hm[:, k - 1]).to(pdt)) for k in range(nq)],
           "r": [torch.mm(rows(dZR[:, k]).t(), rows(Xm[:, k]).to(pdt)) for k in range(nr)]}
    for name, mats in per.items():
        if not mats:
            continue
        if cell.rank is None:
            grads[f"weight_{name}"] = torch.stack(mats).to(p[f"weight_{name}"].dtype)
        else:
            left, right = p[f"weight_{name}_left"], p[f"weight_{name}_right"]
            grads[f"weight_{name}_left"] = torch.stack([m.to(left.dtype) @ right[k].t() for k, m in enumerate(mats)])
            grads[f"weight_{name}_right"] = torch.stack([left[k].t() @ m.to(left.dtype) for k, m in enumerate(mats)])
    return grads
