"""The floors under the fused engine's step on its own kernels (``gatedrnn bench``'s ``products``
and ``chained`` engines): the matrix products it runs, alone, with and without the dependency a
recurrence puts between them."""
from __future__ import annotations

import torch


def _feed(a, prev):
    """``a`` ``(B, K)`` written from ``prev`` ``(B, N)`` (repeated across ``a``'s width where it is
    narrower) in one call: the least a step's elementwise work does between one product and the
    next, which reads what it wrote."""
    K, N = a.shape[1], prev.shape[1]
    if K <= N:
        a.copy_(prev[:, :K])
    elif K % N == 0:
        a.view(a.shape[0], K // N, N).copy_(prev.unsqueeze(1).expand(-1, K // N, -1))
    else:
        for j in range(0, K, N):
            a[:, j:j + N].copy_(prev[:, :min(N, K - j)])


def products_only(module, x, backward: bool, chained: bool = False):
    """A function running only the matrix products the fused engine runs for one layer of
    ``module`` on ``x`` ``(T, B, I)``, with the same kernels (``products.Product``: oneDNN with its
    weight packing where usable, else MKL; ``products.hoisted``, ``input_grad`` and ``weight_grad``
    for the products over all steps), on random operands of the right shapes. No nonlinearity, no
    elementwise work, no bookkeeping.

    Per step, in sequence: the recurrent products, and for the Mogrifier every round's product and
    the joint ``[x, h]`` product; the sLSTM's with several heads as one batched product over the
    heads; none for minGRU, minLSTM and IndRNN, whose recurrence is elementwise. Over all ``T*B``
    rows at once: the input product (not for the Mogrifier, whose input is gated per step) and,
    with ``backward``, the input gradient and every weight gradient (the cheapest way to do them).

    The per-step products read operands written once, before the loop. In the loops each reads
    what the calling thread has just written from the product before it; with ``chained``, so do
    these (``_feed``: one copy per product, the least work between two products of a recurrence),
    which at several threads moves the input from the writer's core to the others' for every
    product. Not for the sLSTM's batched heads.
    """
    from ..torch_engine.loops.mogrifier import mogrifier_matrices
    from ..torch_engine.products import Product, hoisted as hoisted_product, input_grad, weight_grad

    cell, p = module.cell, {k: v.detach() for k, v in module.layer_params(0).items()}
    T, B, _ = x.shape
    rounds = getattr(cell, "rounds", 0)
    mogrifier = cell.name == "mogrifier" and rounds
    nq, nr = (rounds + 1) // 2, rounds // 2

    heads = getattr(cell, "num_heads", 1)

    def weights():  # (stepped, hoisted); the Mogrifier with ``rank`` builds Q_k, R_k from factors
        if cell.name in ("mingru", "minlstm", "indrnn") or heads > 1:  # no (2-D) per-step product
            return [], [p["weight_ih"]]
        if mogrifier:
            return ([torch.cat([p["weight_ih"], p["weight_hh"]], dim=1),
                     *mogrifier_matrices(cell, p, "q", nq), *mogrifier_matrices(cell, p, "r", nr)], [])
        return [p["weight_hh"]] + ([p["weight_hr"]] if "weight_hr" in p else []), [p["weight_ih"]]

    with torch.no_grad():
        stepped, hoisted = weights()
    rand = lambda *shape: torch.randn(*shape, dtype=x.dtype, device=x.device)  # noqa: E731
    step_in = [rand(B, w.shape[1]) for w in stepped]
    step_grad = [rand(B, w.shape[0]) for w in stepped]
    rows_in = [rand(T * B, w.shape[1]) for w in stepped + hoisted]
    rows_grad = [rand(T * B, w.shape[0]) for w in stepped + hoisted]
    factors = [(p[f"weight_{n}_left"][k], p[f"weight_{n}_right"][k]) for n, count in (("q", nq), ("r", nr))
               for k in range(count)] if mogrifier and cell.rank is not None else []
    factor_grads = [rand(left.shape[0], right.shape[1]) for left, right in factors]

    if heads > 1:  # the sLSTM's heads: (K, B, DH) x (K, DH, 4DH) per step
        K, DH = heads, p["weight_hh"].shape[1]
        wk = rand(K, DH, 4 * DH)
        hk, dk = rand(K, B, DH), rand(K, B, 4 * DH)
        hrows, drows = rand(K, T * B, DH), rand(K, T * B, 4 * DH)

    def run_heads(backward):
        for _ in range(T):
            torch.bmm(hk, wk)
        if backward:
            for _ in range(T):
                torch.bmm(dk, wk.transpose(1, 2))
            torch.bmm(drows.transpose(1, 2), hrows)

    def run_steps(prods, operands):  # T steps of the per-step products, each chained to the one before
        prev = None
        for _ in range(T):
            for prod, a in zip(prods, operands):
                if chained and prev is not None:
                    _feed(a, prev)
                prev = prod(a)

    def run():
        if heads > 1:
            with torch.no_grad():
                run_heads(backward)
        with torch.no_grad():
            stepped, hoisted = weights()
            for w, r in zip(hoisted, rows_in[len(stepped):]):
                hoisted_product(r, w)
            run_steps([Product(w, B) for w in stepped], step_in)
            if not backward:
                return
            stepped, hoisted = weights()
            run_steps([Product(w.t(), B) for w in stepped], step_grad)
            for w, d in zip(hoisted, rows_grad[len(stepped):]):
                input_grad(d, w)  # the input gradient
            for d, a in zip(rows_grad, rows_in):
                weight_grad(d, a)  # the weight gradients
            for (left, right), d in zip(factors, factor_grads):  # the Mogrifier's factors, from d Q_k
                torch.mm(d, right.t())
                torch.mm(left.t(), d)
    return run
