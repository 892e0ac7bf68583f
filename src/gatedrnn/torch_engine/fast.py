"""Hand-specialised sequence loops for the hot configurations of the fused engine.

    if fast.supports(cell, params, x, keep):
        y, state_n = fast.run_fast(cell, params, x, state)

The generic ``FusedLayer`` runs a cell's ``step``/``step_backward`` through the ``ops`` namespace:
right for every option, but on CPU each step pays for dictionaries, concatenations, per-step
weight-gradient products (``B`` rows each, a poor shape for a matrix kernel) and MKL's generic
path on AMD processors. Here, for ``lstm``, ``peephole``, ``cifg``, ``gru``, ``rnn`` and
``mogrifier`` without projections, dropped gates or identity activations (and the Mogrifier
without layer norm), with or without zoneout or padding (keep masks), state dropout
(``mask_hh``) and layer norm:

- the input product of all steps is one matrix product before the loop (both biases,
  ``ln_bias_hh`` and ``forget_bias`` folded into it where they add up; the GRU keeps its
  recurrent biases in the recurrent product, whose ``n`` block meets ``r``), layer-normalised
  there over all steps at once;
- with layer norm, each step normalises its recurrent product with ``torch.native_layer_norm``
  and the backward uses its saved statistics (``native_layer_norm_backward``); the gains'
  gradients are one reduction over all steps after the loop;
- each step is one recurrent product (the input added by the product's kernel) and a few
  in-place elementwise ops into preallocated buffers; the forward saves post-activation gates;
- the backward runs the BPTT in reverse, one product per step for ``dh``, and computes every
  weight gradient as one product over all steps after the loop;
- the per-step products (``B`` rows) of weights of ``ONEDNN_MIN_WEIGHT`` elements or more go
  through oneDNN with the weight reordered once per call (``torch.ops.mkldnn._reorder_linear_weight``
  / ``_linear_pointwise``, what ``torch.compile`` emits on CPU); smaller weights, where oneDNN's
  per-call cost outweighs it, through ``torch.addmm`` (benchmarks/product_kernels.py measures
  both; benchmarks/RESULTS.md has the figures). These are internal entry points: anything they
  refuse (float64, bfloat16 without AVX-512, CUDA, a torch without them) falls back to
  ``torch.addmm``, and ``GATEDRNN_ONEDNN=0`` (or ``ONEDNN = False``) turns them off.

The loops are tested against the generic fused path and the autograd twin (float64, every
output and gradient, tests/torch_engine/test_fast.py). ``GATEDRNN_FAST=0`` (or ``ENABLED =
False``) sends everything to the generic path. When a graph of the backward is requested
(double backward), the backward recomputes through the autograd twin, as ``FusedLayer`` does.
"""
from __future__ import annotations

import os

import torch

from ..cells.base import LN_EPS

ENABLED = os.environ.get("GATEDRNN_FAST", "1") != "0"
#: steps whose pre-activation gradients the Mogrifier's backward holds at once (see its backward)
CHUNK = 16
ONEDNN = os.environ.get("GATEDRNN_ONEDNN", "1") != "0"
#: the smallest weight (elements) whose per-step products run on oneDNN. At 32 rows on an AVX2
#: Zen 3 (benchmarks/RESULTS.md, "Which kernel runs a step's product"), oneDNN took 1.06-3.0x
#: MKL's time below 512 x 512 elements, 0.90-1.01x at it and 0.80-0.96x above it.
ONEDNN_MIN_WEIGHT = 512 * 512


# -- products -------------------------------------------------------------------------------
def _onednn_usable(w) -> bool:
    return (ONEDNN and w.device.type == "cpu" and w.dtype == torch.float32 and w.numel() >= ONEDNN_MIN_WEIGHT
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


class Product:
    """``x @ w.T (+ add)`` for one weight ``w`` ``(N, K)`` reused over many calls.

    ``add`` is a bias ``(N,)`` or a tensor ``(M, N)``; with oneDNN the addition happens inside the
    product's kernel. The weight is reordered into oneDNN's blocked layout once, here.
    """

    def __init__(self, w, rows: int):
        self.packed = None
        if _onednn_usable(w):
            try:
                self.packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().contiguous(), rows)
            except (RuntimeError, AttributeError):  # a build or processor without the kernel
                self.packed = None
        # with the packed copy, ``w`` itself is not held (it may be a temporary the caller built)
        self.wt = w.t() if self.packed is None else None

    def __call__(self, x, add=None):
        if self.packed is not None:
            if add is None or add.dim() == 1:
                return torch.ops.mkldnn._linear_pointwise(x, self.packed, add, "none", [], "")
            return torch.ops.mkldnn._linear_pointwise.binary(x, add, self.packed, None, "add")
        if add is None:
            return torch.mm(x, self.wt)
        return torch.addmm(add, x, self.wt)


def _hoisted(x, w, bias=None):
    """``x @ w.T (+ bias)`` once over all steps, ``x`` ``(T*B, K)``. On MKL: at these sizes
    (thousands of rows) it measured 1.1-1.3x faster than oneDNN with its weight reorder."""
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


def _rows(a):
    return a.reshape(-1, a.shape[-1])


def _weight_grad(d, inp):
    """``sum over steps and rows of d^T inp``: ``(T, B, N), (T, B, K) -> (N, K)``, one product."""
    return torch.mm(_rows(d).t(), _rows(inp))


def _sum_rows(d):
    return _rows(d).sum(0)


# -- which configurations run here ---------------------------------------------------------
def _lstm_fast(cell) -> bool:
    return (not cell.proj_size and not cell.config.get("drop_gates")
            and cell.input_activation == "tanh" and cell.output_activation == "tanh")


def kernel_for(cell):
    """The specialised loop for ``cell``, or ``None`` where only the generic path is right."""
    name = cell.name
    if name in ("lstm", "peephole", "cifg"):
        return LSTM_KERNEL if _lstm_fast(cell) else None
    if name == "mogrifier":
        if not _lstm_fast(cell):
            return None
        if not cell.rounds:
            return LSTM_KERNEL
        return None if cell.layer_norm else MOGRIFIER_KERNEL
    return {"gru": GRU_KERNEL, "rnn": RNN_KERNEL}.get(name)


def lstm_step(cell, p):
    """One step ``(x (B, I), (h, c)) -> (h, c)`` of an LSTM-family layer without layer norm,
    projection, dropped gates or identity activations (the configurations ``torch._VF.lstm_cell``
    does not compute: peepholes, CIFG, ``forget_bias``, the Mogrifier's rounds), in a handful of
    out-of-place operations, so autograd sees through it; or ``None``. For ``step()``: the cell's
    own step does the same with its cache and block dicts, which at batch 1 cost more than the
    arithmetic. ``p`` holds the parameters themselves, and every view of them is taken per call,
    so updates in place and a replaced ``.data`` are both seen."""
    if cell.name not in ("lstm", "peephole", "cifg", "mogrifier") or cell.layer_norm or not _lstm_fast(cell):
        return None
    G = cell.num_gates
    H = p["weight_hh"].shape[0] // G
    rounds = getattr(cell, "rounds", 0)

    def mog(v, name, k):  # v @ Q_k^T (R_k^T); with ``rank``, through the two thin factors
        if cell.rank is None:
            return v @ p[f"weight_{name}"][k].t()
        return (v @ p[f"weight_{name}_right"][k].t()) @ p[f"weight_{name}_left"][k].t()

    def step(x, state):
        h, c = state
        if rounds:
            zero = x.new_zeros(())
            for j in range(1, rounds + 1):  # 2 sigma(.) * v in one addcmul
                if j % 2:
                    x = torch.addcmul(zero, torch.sigmoid(mog(h, "q", (j - 1) // 2)), x, value=2.0)
                else:
                    h = torch.addcmul(zero, torch.sigmoid(mog(x, "r", j // 2 - 1)), h, value=2.0)
        bias = _combined_bias(cell, p, G, H, x)
        w_ih, w_hh = p["weight_ih"].t(), p["weight_hh"].t()
        peep = p["weight_peephole"].split(H) if cell.peephole else None  # w_i, w_f, w_o
        a = x @ w_ih if bias is None else torch.addmm(bias, x, w_ih)
        a = a.addmm(h, w_hh)
        if cell.coupled:  # f, g, o; c = f c_prev + (1 - f) g = g + f (c_prev - g)
            f, g, o = a.chunk(3, 1)
            f, g = torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(g, f, c - g)
        else:
            i, f, g, o = a.chunk(4, 1)
            if peep is not None:
                i, f = torch.addcmul(i, c, peep[0]), torch.addcmul(f, c, peep[1])
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
            c = torch.addcmul(f * c, i, g)
        if peep is not None:
            o = torch.addcmul(o, c, peep[-1])
        return torch.sigmoid(o) * torch.tanh(c), c

    return step


def _autocast(x) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:  # a device type autocast does not know
        return False


def supports(cell, params, x, keep=None, state=()) -> bool:
    """Whether ``run_fast`` computes this call; ``False`` sends it to the generic loop.

    The loops write every buffer in ``x``'s dtype, so autocast (whose dtype policy the generic
    path implements) and mixed dtypes or devices go to the generic loop too.
    """
    if not (ENABLED and x.dim() == 3 and x.shape[0] > 0 and kernel_for(cell) is not None):
        return False
    if "mask_ih" in params or _autocast(x):
        return False
    masks = [k for k in (keep or ()) if k is not None]
    mask = params.get("mask_hh")
    if mask is not None and mask.shape != (x.shape[1], params["weight_hh"].shape[1]):
        return False
    if any(k.dim() != 3 or k.shape[0] != x.shape[0] for k in masks):
        return False
    return all(t.dtype == x.dtype and t.device == x.device for t in (*params.values(), *state, *masks))


def _keep(keep, n, complement=False):
    """The keep mask of each state element (``None``: not mixed), and with ``complement`` also
    ``1 - keep`` (the backward's share of the gradient that goes through the step)."""
    keep = (None,) * n if keep is None else tuple(keep)
    if not complement:
        return keep
    return keep, tuple(None if k is None else 1.0 - k for k in keep)


# -- the two products every cell has, with state dropout and layer norm -----------------------
def _input_forward(cell, p, x, bias):
    """``gx = x W_ih^T + bias`` over all steps at once, layer-normalised (gain ``ln_weight_ih``)
    when the cell says so; returns ``gx (T, B, N)`` and what the backward needs."""
    T, B, _ = x.shape
    w = p["weight_ih"]
    if not cell.layer_norm:
        return _hoisted(_rows(x), w, bias).view(T, B, -1), {}
    ax = torch.mm(_rows(x), w.t())
    out, mu, rstd = torch.native_layer_norm(ax, [w.shape[0]], p["ln_weight_ih"], bias, LN_EPS)
    return out.view(T, B, -1), {"in_a": ax, "in_mu": mu, "in_rstd": rstd}


def _input_backward(cell, p, x, saved, dgx, need_dx, grads):
    """Adds ``weight_ih`` (and ``ln_weight_ih``) gradients; ``dx`` into ``grads["x"]`` if asked."""
    T, B, I = x.shape
    w = p["weight_ih"]
    d = _rows(dgx)
    if cell.layer_norm:
        d, grads["ln_weight_ih"], _ = torch.ops.aten.native_layer_norm_backward(
            d, saved["in_a"], [w.shape[0]], saved["in_mu"], saved["in_rstd"], p["ln_weight_ih"], None,
            [True, True, False])
    grads["weight_ih"] = torch.mm(d.t(), _rows(x))
    if need_dx:
        grads["x"] = torch.mm(d, w).view(T, B, I)


class Recurrent:
    """Each step's ``(h * mask_hh) @ W_hh^T``: layer-normalised when the cell says so (gain
    ``ln_weight_hh``, then ``ln_bias``), plus ``add`` (a bias, or the step's input pre-activation,
    which oneDNN adds inside the product when there is no layer norm).

    ``mask_hh`` ``(B, R)`` is variational dropout of the state that feeds the product (the other
    uses of ``h`` see it undropped). With layer norm the forward keeps each step's product and
    its statistics; the backward turns ``dL/d(output)`` into ``dL/dh`` per step and gives the
    weight gradients as one product after the loop.
    """

    def __init__(self, cell, p, B, steps, like, saved=None, ln_bias=None, backward=False):
        w = p["weight_hh"]
        self.N = w.shape[0]
        self.ln, self.mask = cell.layer_norm, p.get("mask_hh")
        self.gain, self.ln_bias = p.get("ln_weight_hh"), ln_bias
        self.prod = Product(w.t() if backward else w, B)
        if backward:
            self.R, self.Mu, self.Rs = (saved.get(k) for k in ("hh_a", "hh_mu", "hh_rstd"))
            self.dR = like.new_empty(steps, B, self.N) if self.ln else None
        else:
            self.hm = like.new_empty(B, w.shape[1]) if self.mask is not None else None
            if self.ln:
                self.R, self.Mu, self.Rs = (like.new_empty(steps, B, n) for n in (self.N, 1, 1))

    def saved(self):
        return {"hh_a": self.R, "hh_mu": self.Mu, "hh_rstd": self.Rs} if self.ln else {}

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
        dh = self.prod(d)
        return dh if self.mask is None else dh.mul_(self.mask)

    def grads(self, dout, Hprev, grads):
        """``weight_hh`` (and ``ln_weight_hh``) gradients from every step's output gradient."""
        inp = Hprev if self.mask is None else Hprev * self.mask
        if not self.ln:
            grads["weight_hh"] = _weight_grad(dout, inp)
            return
        grads["weight_hh"] = _weight_grad(self.dR, inp)
        r_hat = (self.R - self.Mu).mul_(self.Rs)
        grads["ln_weight_hh"] = (_rows(dout) * _rows(r_hat)).sum(0)


def _summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx) -> dict:
    """Gradients of both products and every bias where the input and recurrent pre-activations
    are summed (the LSTM family, the Elman RNN): ``dA`` is the gradient of that sum."""
    grads = {}
    hh.grads(dA, Hs[:-1], grads)
    _input_backward(cell, p, x, saved, dA, need_dx, grads)
    _bias_grads(cell, dA, grads, "bias_ih", "bias_hh", "ln_bias_hh")
    return grads


def _lerp_into(out, new, prev, k):
    """``out = keep * prev + (1 - keep) * new`` (zoneout or a padded step), or ``new``."""
    if k is None:
        if out is not new:
            out.copy_(new)
    else:
        torch.lerp(new, prev, k, out=out)


# -- LSTM, peephole LSTM, CIFG (and Mogrifier with rounds = 0) ------------------------------
def _combined_bias(cell, p, G, H, like):
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


def _bias_grads(cell, d, grads, *names):
    """The gradient of each additive bias is the sum of its pre-activations' gradient."""
    present = [n for n in names if (n.startswith("ln_") and cell.layer_norm) or (not n.startswith("ln_") and cell.bias)]
    if present:
        total = _sum_rows(d)
        for k, n in enumerate(present):
            grads[n] = total if k == 0 else total.clone()


class LSTMKernel:
    """Blocks ``i, f, g, o`` (``f, g, o`` for CIFG, with ``i = 1 - f``); peepholes on ``i, f, o``;
    with layer norm, ``tanh(LN(c))``. Zoneout mixes ``h`` and ``c`` after each step; the backward
    reads the unmixed ``c_t`` where the cell does (its ``tanh``, the output peephole)."""

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        G = cell.num_gates
        H = p["weight_hh"].shape[0] // G
        coupled, peep, ln = cell.coupled, cell.peephole, cell.layer_norm
        fi, gi, oi = (0, 1, 2) if coupled else (1, 2, 3)
        kh, kc = _keep(keep, 2)
        S = T if save else 1
        gx, saved = _input_forward(cell, p, x, _combined_bias(cell, p, G, H, x))
        hh = Recurrent(cell, p, B, S, x)
        if peep:
            w_i, w_f, w_o = p["weight_peephole"].split(H)
        h0, c0 = state
        Hs = x.new_empty(T + 1, B, H)  # h_0 .. h_T; y is Hs[1:]
        Hs[0] = h0
        C = x.new_empty(T + 1 if save else 2, B, H)  # the state c, after zoneout
        C[0] = c0
        Cn = C if kc is None else x.new_empty(C.shape)  # the cell's c_t, before zoneout
        Gs = x.new_empty(S, B, G * H)  # post-activation gates
        TC = x.new_empty(S if ln else 1, B, H)  # tanh(LN(c_t)) (saved with layer norm)
        if ln:
            CMu, CRs = x.new_empty(S, B, 1), x.new_empty(S, B, 1)
        hnew = x.new_empty(B, H) if kh is not None else None
        for t in range(T):
            s = t if save else 0
            a = hh(Hs[t], s, gx[t])  # (B, G*H), a fresh tensor
            gt = Gs[s]
            j, jn = (t, t + 1) if save else (t % 2, (t + 1) % 2)
            cp, cn = C[j], Cn[jn]
            f, g, o = (gt[:, k * H : (k + 1) * H] for k in (fi, gi, oi))
            if peep:
                a[:, :H].addcmul_(cp, w_i)
                a[:, H : 2 * H].addcmul_(cp, w_f)
                torch.sigmoid(a[:, : 2 * H], out=gt[:, : 2 * H])
            else:
                torch.sigmoid(a, out=gt)  # the g block is overwritten by its tanh below
            torch.tanh(a[:, gi * H : (gi + 1) * H], out=g)
            if coupled:  # c = f c_prev + (1 - f) g = g + f (c_prev - g)
                torch.sub(cp, g, out=cn)
                cn.mul_(f).add_(g)
            else:
                torch.mul(f, cp, out=cn)
                cn.addcmul_(gt[:, :H], g)
            if peep:  # the output gate looks at c_t
                a_o = a[:, oi * H :]
                a_o.addcmul_(cn, w_o)
                torch.sigmoid(a_o, out=o)
            tc = TC[s if ln else 0]
            if ln:
                n, CMu[s], CRs[s] = torch.native_layer_norm(cn, [H], p["ln_weight_c"], p["ln_bias_c"], LN_EPS)
                torch.tanh(n, out=tc)
            else:
                torch.tanh(cn, out=tc)
            if kh is None:
                torch.mul(o, tc, out=Hs[t + 1])
            else:
                _lerp_into(Hs[t + 1], torch.mul(o, tc, out=hnew), Hs[t], kh[t])
            if kc is not None:
                _lerp_into(C[jn], cn, cp, kc[t])
        c_n = C[T] if save else C[T % 2]
        if not save:
            return Hs[1:], (Hs[T].clone(), c_n.clone()), None
        saved.update(Hs=Hs, C=C, Cn=Cn if kc is not None else None, Gs=Gs, **hh.saved())
        if ln:
            saved.update(TC=TC, CMu=CMu, CRs=CRs)
        return Hs[1:], (Hs[T].clone(), c_n.clone()), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, C, Gs = saved["Hs"], saved["C"], saved["Gs"]
        Cn = C if saved.get("Cn") is None else saved["Cn"]
        T, B, I = x.shape
        G = cell.num_gates
        H = p["weight_hh"].shape[0] // G
        coupled, peep, ln = cell.coupled, cell.peephole, cell.layer_norm
        ii, fi, gi, oi = (None, 0, 1, 2) if coupled else (0, 1, 2, 3)
        (kh, kc), (nkh, nkc) = _keep(keep, 2, complement=True)
        if peep:
            w_i, w_f, w_o = p["weight_peephole"].split(H)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        dh_n, dc_n = dstate
        dc = torch.zeros_like(C[0]) if dc_n is None else dc_n.clone()
        dh = torch.zeros_like(C[0]) if dh_n is None else dh_n
        dA = x.new_empty(T, B, G * H)
        dN = x.new_empty(T, B, H) if ln else None  # dL/d LN(c_t), for the gains
        dv = x.new_empty(B, G * H)
        tc, tmp = x.new_empty(B, H), x.new_empty(B, H)
        one = x.new_ones(())
        blk = lambda m, k: m[:, k * H : (k + 1) * H]  # noqa: E731
        for t in reversed(range(T)):
            if dy is not None:
                dh = dh + dy[t]
            if kh is not None:  # zoneout: the kept share goes straight to the previous state
                carry_h, dh = dh * kh[t], dh * nkh[t]
            if kc is not None:
                carry_c = dc * kc[t]
                dc.mul_(nkc[t])
            gt, da = Gs[t], dA[t]
            cp, cn = C[t], Cn[t + 1]
            f, g, o = blk(gt, fi), blk(gt, gi), blk(gt, oi)
            torch.addcmul(gt, gt, gt, value=-1.0, out=dv)  # sigma' = s (1 - s) ...
            torch.addcmul(one, g, g, value=-1.0, out=blk(dv, gi))  # ... and tanh' = 1 - g^2
            if ln:
                tc = saved["TC"][t]
            else:
                torch.tanh(cn, out=tc)
            da_o = blk(da, oi)
            torch.mul(dh, tc, out=da_o)
            da_o.mul_(blk(dv, oi))
            torch.addcmul(one, tc, tc, value=-1.0, out=tmp)
            tmp.mul_(o)
            if ln:
                dn = torch.mul(dh, tmp, out=dN[t])
                dc.add_(torch.ops.aten.native_layer_norm_backward(
                    dn, cn, [H], saved["CMu"][t], saved["CRs"][t], p["ln_weight_c"], None, [True, False, False])[0])
            else:
                dc.addcmul_(dh, tmp)
            if peep:
                dc.addcmul_(da_o, w_o)
            if coupled:  # dL/df = dc (c_prev - g), dL/dg = dc (1 - f)
                da_f, da_g = blk(da, fi), blk(da, gi)
                torch.sub(cp, g, out=da_f)
                da_f.mul_(dc)
                torch.addcmul(dc, dc, f, value=-1.0, out=da_g)
                da[:, : 2 * H].mul_(dv[:, : 2 * H])
            else:
                torch.mul(dc, g, out=blk(da, ii))
                torch.mul(dc, cp, out=blk(da, fi))
                torch.mul(dc, gt[:, :H], out=blk(da, gi))
                da[:, : 3 * H].mul_(dv[:, : 3 * H])
            dc.mul_(f)
            if peep:
                dc.addcmul_(blk(da, ii), w_i)
                dc.addcmul_(blk(da, fi), w_f)
            if kc is not None:
                dc.add_(carry_c)
            dh = hh.backward(da, t)
            if kh is not None:
                dh.add_(carry_h)
        grads = _summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx)
        if peep:
            prev, cur = _rows(C[:-1]), _rows(Cn[1:])
            dA2 = _rows(dA)
            grads["weight_peephole"] = torch.cat([
                (dA2[:, ii * H : (ii + 1) * H] * prev).sum(0),
                (dA2[:, fi * H : (fi + 1) * H] * prev).sum(0),
                (dA2[:, oi * H : (oi + 1) * H] * cur).sum(0),
            ])
        if ln:
            c_hat = (Cn[1:] - saved["CMu"]).mul_(saved["CRs"])
            grads["ln_weight_c"] = (_rows(dN) * _rows(c_hat)).sum(0)
            grads["ln_bias_c"] = _sum_rows(dN)
        return grads, (dh, dc)


# -- GRU ------------------------------------------------------------------------------------
class GRUKernel:
    """Blocks ``r, z, n``; ``n = tanh(a_x,n + r * a_h,n)`` with ``b_hn`` inside ``a_h,n``."""

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 3
        (kh,) = _keep(keep, 1)
        S = T if save else 1
        b_hh = p["bias_hh"] if cell.bias else None
        if cell.layer_norm:  # the recurrent constants stay inside a_h (its n block meets r)
            ln_bias, add = (p["ln_bias_hh"] if b_hh is None else p["ln_bias_hh"] + b_hh), None
        else:
            ln_bias, add = None, b_hh
        gx, saved = _input_forward(cell, p, x, p["bias_ih"] if cell.bias else None)
        hh = Recurrent(cell, p, B, S, x, ln_bias=ln_bias)
        (h0,) = state
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = h0
        Gs = x.new_empty(S, B, 3 * H)  # r, z, n
        GHn = x.new_empty(S, B, H)  # a_h,n, which the r gradient needs
        hnew = x.new_empty(B, H) if kh is not None else None
        for t in range(T):
            s = t if save else 0
            gh = hh(Hs[t], s, add)  # (B, 3H)
            gt = Gs[s]
            rz = gt[:, : 2 * H]
            torch.add(gx[t, :, : 2 * H], gh[:, : 2 * H], out=rz)
            rz.sigmoid_()
            n = gt[:, 2 * H :]
            torch.addcmul(gx[t, :, 2 * H :], gt[:, :H], gh[:, 2 * H :], out=n)
            n.tanh_()
            if save:
                GHn[t].copy_(gh[:, 2 * H :])
            hn = Hs[t + 1] if kh is None else hnew  # h = n + z (h_prev - n)
            torch.sub(Hs[t], n, out=hn)
            hn.mul_(gt[:, H : 2 * H]).add_(n)
            if kh is not None:
                _lerp_into(Hs[t + 1], hn, Hs[t], kh[t])
        if not save:
            return Hs[1:], (Hs[T].clone(),), None
        saved.update(Hs=Hs, Gs=Gs, GHn=GHn, **hh.saved())
        return Hs[1:], (Hs[T].clone(),), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, Gs, GHn = saved["Hs"], saved["Gs"], saved["GHn"]
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 3
        (kh,), (nkh,) = _keep(keep, 1, complement=True)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        (dh_n,) = dstate
        dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
        dGX = x.new_empty(T, B, 3 * H)  # gradient w.r.t. the input pre-activations
        dGH = x.new_empty(T, B, 3 * H)  # ... and the recurrent ones (n block times r)
        tmp = x.new_empty(B, 2 * H)
        one = x.new_ones(())
        for t in reversed(range(T)):
            if dy is not None:
                dh = dh + dy[t]
            if kh is not None:
                carry_h, dh = dh * kh[t], dh * nkh[t]
            gt, dgx, dgh = Gs[t], dGX[t], dGH[t]
            r, z, n = gt[:, :H], gt[:, H : 2 * H], gt[:, 2 * H :]
            dar, daz, dan = dgx[:, :H], dgx[:, H : 2 * H], dgx[:, 2 * H :]
            torch.addcmul(dh, dh, z, value=-1.0, out=dan)  # dL/dn = dh (1 - z)
            torch.addcmul(one, n, n, value=-1.0, out=tmp[:, :H])
            dan.mul_(tmp[:, :H])
            torch.sub(Hs[t], n, out=daz)  # dL/dz = dh (h_prev - n)
            daz.mul_(dh)
            torch.mul(dan, GHn[t], out=dar)  # dL/dr = da_n a_h,n
            rz = gt[:, : 2 * H]
            torch.addcmul(rz, rz, rz, value=-1.0, out=tmp)
            dgx[:, : 2 * H].mul_(tmp)
            dgh.copy_(dgx)
            dgh[:, 2 * H :].mul_(r)
            dh = hh.backward(dgh, t).addcmul_(dh, z)
            if kh is not None:
                dh.add_(carry_h)
        grads = {}
        hh.grads(dGH, Hs[:-1], grads)
        _input_backward(cell, p, x, saved, dGX, need_dx, grads)
        _bias_grads(cell, dGX, grads, "bias_ih")
        _bias_grads(cell, dGH, grads, "bias_hh", "ln_bias_hh")
        return grads, (dh,)


# -- Elman RNN ------------------------------------------------------------------------------
class RNNKernel:
    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0]
        (kh,) = _keep(keep, 1)
        S = T if save else 1
        gx, saved = _input_forward(cell, p, x, _combined_bias(cell, p, 1, H, x))
        hh = Recurrent(cell, p, B, S, x)
        act = torch.tanh if cell.nonlinearity == "tanh" else torch.relu
        (h0,) = state
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = h0
        A = x.new_empty(S, B, H) if kh is not None else None  # act(a_t), before zoneout
        for t in range(T):
            s = t if save else 0
            a = act(hh(Hs[t], s, gx[t]))
            if kh is None:
                Hs[t + 1] = a
            else:
                A[s] = a
                _lerp_into(Hs[t + 1], a, Hs[t], kh[t])
        if not save:
            return Hs[1:], (Hs[T].clone(),), None
        saved.update(Hs=Hs, A=A, **hh.saved())
        return Hs[1:], (Hs[T].clone(),), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs = saved["Hs"]
        A = Hs[1:] if saved.get("A") is None else saved["A"]
        T, B, I = x.shape
        (kh,), (nkh,) = _keep(keep, 1, complement=True)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        (dh_n,) = dstate
        dh = torch.zeros_like(Hs[0]) if dh_n is None else dh_n
        dA = x.new_empty(T, B, Hs.shape[-1])
        one = x.new_ones(())
        tanh = cell.nonlinearity == "tanh"
        for t in reversed(range(T)):
            if dy is not None:
                dh = dh + dy[t]
            if kh is not None:
                carry_h, dh = dh * kh[t], dh * nkh[t]
            h, da = A[t], dA[t]
            if tanh:
                torch.addcmul(one, h, h, value=-1.0, out=da)
            else:
                torch.gt(h, 0, out=da)  # relu' from its output
            da.mul_(dh)
            dh = hh.backward(da, t)
            if kh is not None:
                dh.add_(carry_h)
        grads = _summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx)
        return grads, (dh,)


# -- Mogrifier LSTM (rounds >= 1) -----------------------------------------------------------
def _mog_matrices(cell, p, name, n):
    """``Q_k`` ``(I, R)`` / ``R_k`` ``(R, I)`` for ``k < n``, products of factors with ``rank``."""
    if cell.rank is None:
        return [p[f"weight_{name}"][k] for k in range(n)]
    return [p[f"weight_{name}_left"][k] @ p[f"weight_{name}_right"][k] for k in range(n)]


class MogrifierKernel:
    """Rounds of ``x = 2 sigma(h Q^T) x`` / ``h = 2 sigma(x R^T) h``, then an LSTM step whose two
    products are one, ``[x, h] @ [W_ih, W_hh]^T``, so the weight gradients are one product too.

    Per step ``t``: ``x^(k)`` is ``x`` after ``k`` odd rounds (``x^(0) = x_t``, the rest in
    ``Xm[t, k-1]``) and ``h^(k)`` is ``h`` after ``k`` even rounds (``h^(0) = h_{t-1}``, the rest in
    ``Hm[t, k-1]``). Odd round ``j`` (``k = (j-1)//2``) reads ``x^(k), h^(k)``; even round ``j``
    (``k = j//2 - 1``) reads ``x^(k+1), h^(k)``.
    """

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 4
        kh, kc = _keep(keep, 2)
        mask = p.get("mask_hh")
        nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
        bias = _combined_bias(cell, p, 4, H, x)
        lin = Product(torch.cat([p["weight_ih"], p["weight_hh"]], dim=1), B)  # [x, h] @ [W_ih, W_hh]^T
        qs = [Product(q, B) for q in _mog_matrices(cell, p, "q", nq)]
        rs = [Product(r, B) for r in _mog_matrices(cell, p, "r", nr)]
        h0, c0 = state
        S = T if save else 1
        Hs = x.new_empty(T + 1, B, H)
        Hs[0] = h0
        C = x.new_empty(T + 1 if save else 2, B, H)
        C[0] = c0
        Cn = C if kc is None else x.new_empty(C.shape)  # the cell's c_t, before zoneout
        hnew = x.new_empty(B, H) if kh is not None else None
        Gs = x.new_empty(S, B, 4 * H)
        Xm, SQ = x.new_empty(S, nq, B, I), x.new_empty(S, nq, B, I)
        Hm, SR = x.new_empty(S, max(nr, 1), B, H), x.new_empty(S, max(nr, 1), B, H)
        XH = x.new_empty(S, B, I + H)  # the mogrified [x, h] each step's product reads
        tc = x.new_empty(B, H)
        zero = x.new_zeros(())  # addcmul(zero, a, b, value=2.0): 2 a b in one pass (a Python scalar
        # given to mul_ costs a conversion of its own per call)
        for t in range(T):
            s_ = t if save else 0
            xk, hk = x[t], Hs[t]
            for j in range(1, cell.rounds + 1):
                if j % 2:
                    k = (j - 1) // 2
                    s = SQ[s_, k]
                    torch.sigmoid(qs[k](hk), out=s)
                    xk = torch.addcmul(zero, s, xk, value=2.0, out=Xm[s_, k])
                else:
                    k = j // 2 - 1
                    s = SR[s_, k]
                    torch.sigmoid(rs[k](xk), out=s)
                    hk = torch.addcmul(zero, s, hk, value=2.0, out=Hm[s_, k])
            xh = XH[s_]
            xh[:, :I] = xk
            if mask is None:
                xh[:, I:] = hk
            else:  # state dropout: only the product sees the dropped h
                torch.mul(hk, mask, out=xh[:, I:])
            a = lin(xh, bias) if bias is not None else lin(xh)
            gt = Gs[s_]
            j, jn = (t, t + 1) if save else (t % 2, (t + 1) % 2)
            cp, cn = C[j], Cn[jn]
            torch.sigmoid(a, out=gt)
            g = gt[:, 2 * H : 3 * H]
            torch.tanh(a[:, 2 * H : 3 * H], out=g)
            torch.mul(gt[:, H : 2 * H], cp, out=cn)
            cn.addcmul_(gt[:, :H], g)
            torch.tanh(cn, out=tc)
            if kh is None:
                torch.mul(gt[:, 3 * H :], tc, out=Hs[t + 1])
            else:
                _lerp_into(Hs[t + 1], torch.mul(gt[:, 3 * H :], tc, out=hnew), Hs[t], kh[t])
            if kc is not None:
                _lerp_into(C[jn], cn, cp, kc[t])
        c_n = C[T] if save else C[T % 2]
        saved = dict(Hs=Hs, C=C, Cn=Cn if kc is not None else None, Gs=Gs, Xm=Xm, SQ=SQ, Hm=Hm, SR=SR,
                     XH=XH) if save else None
        return Hs[1:], (Hs[T].clone(), c_n.clone()), saved

    @staticmethod
    def backward(cell, p, x, state, saved, dy, dstate, need_dx, keep=None):
        Hs, C, Gs, Xm, SQ, Hm, SR, XH = (saved[k] for k in ("Hs", "C", "Gs", "Xm", "SQ", "Hm", "SR", "XH"))
        Cn = C if saved.get("Cn") is None else saved["Cn"]
        (kh, kc), (nkh, nkc) = _keep(keep, 2, complement=True)
        mask = p.get("mask_hh")
        T, B, I = x.shape
        H = p["weight_hh"].shape[0] // 4
        nq, nr = (cell.rounds + 1) // 2, cell.rounds // 2
        lin_t = Product(torch.cat([p["weight_ih"], p["weight_hh"]], dim=1).t(), B)  # da @ [W_ih, W_hh]
        Qs, Rs = _mog_matrices(cell, p, "q", nq), _mog_matrices(cell, p, "r", nr)
        qs_t = [Product(q.t(), B) for q in Qs]  # dz @ Q_k
        rs_t = [Product(r.t(), B) for r in Rs]  # dz @ R_k
        dh_n, dc_n = dstate
        dc = torch.zeros_like(C[0]) if dc_n is None else dc_n.clone()
        dh = torch.zeros_like(C[0]) if dh_n is None else dh_n
        # the gradients of each step's pre-activations are kept for a chunk of L steps, whose
        # weight gradients are then one product each (L*B rows): far less memory than all T steps
        L = min(T, CHUNK)
        dA = x.new_empty(L, B, 4 * H)
        dX = x.new_empty(T, B, I)
        # the saved buffers stay untouched: a retained graph may run this backward again
        dZQ, dZR = x.new_empty(L, *SQ.shape[1:]), x.new_empty(L, *SR.shape[1:])
        W_in = (  # per name: its rounds, its dZ chunk, the inputs of round k's product over steps [a, b)
            ("q", nq, dZQ, lambda k, a, b: Hs[a:b] if k == 0 else Hm[a:b, k - 1]),
            ("r", nr, dZR, lambda k, a, b: Xm[a:b, k]),
        )
        acc = {"weight_ih": torch.zeros_like(p["weight_ih"]), "weight_hh": torch.zeros_like(p["weight_hh"]),
               "bias": x.new_zeros(4 * H)}
        for (name, n, _, _), mats in zip(W_in, (Qs, Rs)):
            if n:
                acc[name] = x.new_zeros(n, *mats[0].shape)  # the full Q_k (or R_k) of each round

        def flush(a, b):  # the weight gradients of steps [a, b), whose buffers start at slot 0
            dA2, XH2 = _rows(dA[: b - a]).t(), _rows(XH[a:b])
            acc["weight_ih"].addmm_(dA2, XH2[:, :I])
            acc["weight_hh"].addmm_(dA2, XH2[:, I:])
            acc["bias"].add_(dA2.sum(1))
            for name, n, dZ, inputs in W_in:
                for k in range(n):
                    acc[name][k].addmm_(_rows(dZ[: b - a, k]).t(), _rows(inputs(k, a, b)))

        dv = x.new_empty(B, 4 * H)
        tc, tmp = x.new_empty(B, H), x.new_empty(B, H)
        one, zero = x.new_ones(()), x.new_zeros(())
        dsq, dsr = x.new_empty(B, I), x.new_empty(B, H)  # sigma' of a round's gate
        X_at = lambda t, k: x[t] if k == 0 else Xm[t, k - 1]  # noqa: E731
        H_at = lambda t, k: Hs[t] if k == 0 else Hm[t, k - 1]  # noqa: E731
        for t in reversed(range(T)):
            if dy is not None:
                dh = dh + dy[t]
            if kh is not None:  # zoneout: the kept share goes straight to the previous state
                carry_h, dh = dh * kh[t], dh * nkh[t]
            if kc is not None:
                carry_c = dc * kc[t]
                dc.mul_(nkc[t])
            start = t - t % L  # this step's chunk is [start, min(start + L, T)), its slot t - start
            gt, da = Gs[t], dA[t - start]
            cp, cn = C[t], Cn[t + 1]
            i, f, g, o = (gt[:, k * H : (k + 1) * H] for k in range(4))
            torch.addcmul(gt, gt, gt, value=-1.0, out=dv)
            torch.addcmul(one, g, g, value=-1.0, out=dv[:, 2 * H : 3 * H])
            torch.tanh(cn, out=tc)
            torch.mul(dh, tc, out=da[:, 3 * H :])
            torch.addcmul(one, tc, tc, value=-1.0, out=tmp)
            tmp.mul_(o)
            dc.addcmul_(dh, tmp)
            torch.mul(dc, g, out=da[:, :H])
            torch.mul(dc, cp, out=da[:, H : 2 * H])
            torch.mul(dc, i, out=da[:, 2 * H : 3 * H])
            da.mul_(dv)
            dc.mul_(f)
            if kc is not None:
                dc.add_(carry_c)
            dxh = lin_t(da)  # (B, I+H)
            dx, dh = dxh[:, :I].contiguous(), dxh[:, I:].contiguous()
            if mask is not None:
                dh.mul_(mask)
            for j in range(cell.rounds, 0, -1):
                if j % 2:  # x^(k+1) = 2 s x^(k), s = sigma(h^(k) Q_k^T)
                    k = (j - 1) // 2
                    s, dz = SQ[t, k], dZQ[t - start, k]
                    torch.mul(dx, X_at(t, k), out=dz)
                    torch.addcmul(zero, dx, s, value=2.0, out=dx)
                    torch.addcmul(zero, dz, torch.addcmul(s, s, s, value=-1.0, out=dsq), value=2.0, out=dz)
                    dh.add_(qs_t[k](dz))
                else:  # h^(k+1) = 2 s h^(k), s = sigma(x^(k+1) R_k^T)
                    k = j // 2 - 1
                    s, dz = SR[t, k], dZR[t - start, k]
                    torch.mul(dh, H_at(t, k), out=dz)
                    torch.addcmul(zero, dh, s, value=2.0, out=dh)
                    torch.addcmul(zero, dz, torch.addcmul(s, s, s, value=-1.0, out=dsr), value=2.0, out=dz)
                    dx.add_(rs_t[k](dz))
            if kh is not None:
                dh.add_(carry_h)
            dX[t] = dx
            if t == start:
                flush(start, min(start + L, T))
        grads = {"weight_ih": acc["weight_ih"], "weight_hh": acc["weight_hh"]}
        if cell.bias:
            grads["bias_ih"], grads["bias_hh"] = acc["bias"], acc["bias"].clone()
        for name, n, _, _ in W_in:
            if n == 0:
                continue
            per_k = acc[name]
            if cell.rank is None:
                grads[f"weight_{name}"] = per_k
            else:
                left, right = p[f"weight_{name}_left"], p[f"weight_{name}_right"]
                grads[f"weight_{name}_left"] = torch.stack([d @ right[k].t() for k, d in enumerate(per_k)])
                grads[f"weight_{name}_right"] = torch.stack([left[k].t() @ d for k, d in enumerate(per_k)])
        grads["x"] = dX
        return grads, (dh, dc)


LSTM_KERNEL, GRU_KERNEL, RNN_KERNEL, MOGRIFIER_KERNEL = LSTMKernel(), GRUKernel(), RNNKernel(), MogrifierKernel()


# -- the autograd Function ------------------------------------------------------------------
class FastLayer(torch.autograd.Function):
    """Forward: a specialised loop saving its buffers. Backward: its hand-written BPTT.
    ``keep`` (zoneout, padding) is a tuple of constant masks, like ``FusedLayer``'s."""

    @staticmethod
    def forward(ctx, kernel, cell, names, keep, *tensors):
        n = len(names)
        params = dict(zip(names, tensors[:n]))
        x, state = tensors[n], tuple(tensors[n + 1 :])
        y, state_n, saved = kernel.forward(cell, params, x, state, save=True, keep=keep)
        ctx.kernel, ctx.cell, ctx.names, ctx.keep, ctx.n_tensors = kernel, cell, names, keep, len(tensors)
        ctx.buffer_names = tuple(saved)
        # through save_for_backward, so autograd frees the buffers after the backward
        ctx.save_for_backward(*tensors, *saved.values())
        return (y, *state_n)

    @staticmethod
    def backward(ctx, dy, *dstate):
        from .functional import _twin_grads

        kernel, cell, names, keep = ctx.kernel, ctx.cell, ctx.names, ctx.keep
        saved = ctx.saved_tensors
        tensors, buffers = saved[: ctx.n_tensors], dict(zip(ctx.buffer_names, saved[ctx.n_tensors :]))
        n = len(names)
        params = dict(zip(names, tensors[:n]))
        x, state0 = tensors[n], tuple(tensors[n + 1 :])
        if torch.is_grad_enabled():  # a graph of the backward is wanted: go through the twin
            return (None, None, None, None, *_twin_grads(cell, params, x, state0, keep, dy, dstate, tensors))
        need_dx = ctx.needs_input_grad[4 + n]
        grads, dstate0 = kernel.backward(cell, params, x, state0, buffers, dy, dstate, need_dx, keep=keep)
        dparams = [grads.get(k) if ctx.needs_input_grad[4 + j] else None for j, k in enumerate(names)]
        return (None, None, None, None, *dparams, grads.get("x"), *dstate0)


def run_fast(cell, params: dict, x, state, keep=None):
    """``(y (T, B, R), state_n)`` through the specialised loop; call only where ``supports``."""
    kernel = kernel_for(cell)
    state = tuple(state)
    tensors = (*params.values(), x, *state)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out = FastLayer.apply(kernel, cell, tuple(params), keep, *tensors)
        return out[0], tuple(out[1:])
    with torch.no_grad():  # inference: one set of reused buffers instead of saved ones
        y, state_n, _ = kernel.forward(cell, params, x, state, save=False, keep=keep)
    return y, state_n
