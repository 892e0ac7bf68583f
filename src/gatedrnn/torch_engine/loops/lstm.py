"""The LSTM family's specialised loop: ``lstm``, ``peephole``, ``cifg`` (and the Mogrifier with
``rounds = 0``), with or without layer norm, biases, ``forget_bias``, zoneout, padding and state
dropout.

Symbols (and those of ``loops/common.py``):

- ``Gs`` ``(S, B, G*H)``: the gates after their activations, blocks ``i, f, g, o`` (``f, g, o``
  for CIFG, whose ``i = 1 - f``).
- ``C`` ``(T+1, B, H)``: ``c_0 .. c_T``, the cell states after zoneout (two alternating rows
  without a backward); ``Cn``: the cell's own ``c_t`` before zoneout (``C`` itself without ``kc``);
  ``cp``, ``cn``: a step's ``c_{t-1}`` (mixed) and ``c_t`` (unmixed).
- ``TC`` ``(S, B, H)``: ``tanh(LN(c_t))``, saved with layer norm (recomputed from ``Cn`` without);
  ``CMu``, ``CRs`` ``(S, B, 1)``: the mean and 1/std of each step's ``c_t`` for layer norm.
- ``dv`` ``(B, G*H)``: each gate's derivative from its output, ``s (1 - s)`` and ``1 - g^2``;
  ``dN`` ``(T, B, H)``: ``dL/d LN(c_t)``, for the gains of ``c``'s layer norm.
- ``fi, gi, oi`` (``ii``): the block index of each gate in ``Gs`` and ``dA``.
"""
from __future__ import annotations

import torch

from ...cells.base import LN_EPS
from .. import buffers, compiled
from ..products import rows, sum_rows
from .common import (
    Recurrent,
    add_carry,
    combined_bias,
    input_forward,
    keep_masks,
    lerp_into,
    split_carry,
    summed_products_grads,
)

_FAMILY = {"bias": ..., "forget_bias": ..., "forget_bias_init": ..., "layer_norm": ...}

#: whether the compiled step adds each step's input pre-activation to the recurrent product
#: itself; off, the product adds it (oneDNN's binary post-op, which took 1.01-1.41x the plain
#: product's time at 32 rows: benchmarks/product_add.py). benchmarks/compiled_ab.py's ``add_in_product``
#: variant turns it off.
ADD_IN_KERNEL = True
#: whether a forward without keep masks, state dropout or layer norm runs all its steps in one call
#: of the compiled kernel (``lstm_sequence_forward``, the recurrent products called from C++);
#: off, one call a step (benchmarks/compiled_ab.py's ``per_step`` variant)
SEQUENCE = True


class Pointwise:
    """One LSTM step's elementwise work after its products, forward and backward, for every
    configuration the loop takes; the Mogrifier's loop runs it too. Buffers and constants are
    made once per call."""

    def __init__(self, cell, p, x, H, saved=None):
        self.H, self.coupled, self.ln = H, cell.coupled, cell.layer_norm
        self.ii, self.fi, self.gi, self.oi = (None, 0, 1, 2) if cell.coupled else (0, 1, 2, 3)
        self.peep = p["weight_peephole"].split(H) if cell.peephole else None  # w_i, w_f, w_o
        self.ln_w, self.ln_b = p.get("ln_weight_c"), p.get("ln_bias_c")
        self.saved = saved
        B = x.shape[1]
        self.tc, self.tmp = x.new_empty(B, H), x.new_empty(B, H)
        self.one = x.new_ones(())
        self.dv = None

    def blk(self, m, k):
        return m[:, k * self.H : (k + 1) * self.H]

    def forward(self, a, gt, cp, cn, tc, stats=None):
        """Gates into ``gt``, ``c_t`` into ``cn``, ``tanh(LN(c_t))`` into ``tc`` from the
        pre-activations ``a`` (a fresh tensor, changed in place); ``stats``: ``(CMu, CRs, s)``
        with layer norm. Returns ``o``."""
        H = self.H
        f, g, o = self.blk(gt, self.fi), self.blk(gt, self.gi), self.blk(gt, self.oi)
        if self.peep is not None:
            w_i, w_f, w_o = self.peep
            a[:, :H].addcmul_(cp, w_i)
            a[:, H : 2 * H].addcmul_(cp, w_f)
            torch.sigmoid(a[:, : 2 * H], out=gt[:, : 2 * H])
        else:
            torch.sigmoid(a, out=gt)  # the g block is overwritten by its tanh below
        torch.tanh(self.blk(a, self.gi), out=g)
        if self.coupled:  # c = f c_prev + (1 - f) g = g + f (c_prev - g)
            torch.sub(cp, g, out=cn)
            cn.mul_(f).add_(g)
        else:
            torch.mul(f, cp, out=cn)
            cn.addcmul_(gt[:, :H], g)
        if self.peep is not None:  # the output gate looks at c_t
            a_o = a[:, self.oi * H :]
            a_o.addcmul_(cn, w_o)
            torch.sigmoid(a_o, out=o)
        if self.ln:
            CMu, CRs, s = stats
            n, CMu[s], CRs[s] = torch.native_layer_norm(cn, [H], self.ln_w, self.ln_b, LN_EPS)
            torch.tanh(n, out=tc)
        else:
            torch.tanh(cn, out=tc)
        return o

    def backward(self, gt, cp, cn, dh, dc, da, t, dN=None):
        """From ``dh``, ``dc`` (the gradients w.r.t. the step's unmixed ``h_t``, ``c_t``) the
        pre-activations' gradient into ``da``; ``dc`` becomes ``dL/dc_{t-1}`` (in place)."""
        H, one = self.H, self.one
        if self.dv is None:
            self.dv = gt.new_empty(gt.shape)
        dv, tmp, blk = self.dv, self.tmp, self.blk
        fi, gi, oi, ii = self.fi, self.gi, self.oi, self.ii
        f, g, o = blk(gt, fi), blk(gt, gi), blk(gt, oi)
        torch.addcmul(gt, gt, gt, value=-1.0, out=dv)  # sigma' = s (1 - s) ...
        torch.addcmul(one, g, g, value=-1.0, out=blk(dv, gi))  # ... and tanh' = 1 - g^2
        if self.ln:
            tc = self.saved["TC"][t]
        else:
            tc = torch.tanh(cn, out=self.tc)
        da_o = blk(da, oi)
        torch.mul(dh, tc, out=da_o)
        da_o.mul_(blk(dv, oi))
        torch.addcmul(one, tc, tc, value=-1.0, out=tmp)
        tmp.mul_(o)
        if self.ln:
            dn = torch.mul(dh, tmp, out=dN[t])
            dc.add_(torch.ops.aten.native_layer_norm_backward(
                dn, cn, [H], self.saved["CMu"][t], self.saved["CRs"][t], self.ln_w, None, [True, False, False])[0])
        else:
            dc.addcmul_(dh, tmp)
        if self.peep is not None:
            dc.addcmul_(da_o, self.peep[2])
        if self.coupled:  # dL/df = dc (c_prev - g), dL/dg = dc (1 - f)
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
        if self.peep is not None:
            dc.addcmul_(blk(da, ii), self.peep[0])
            dc.addcmul_(blk(da, fi), self.peep[1])


class CompiledStep:
    """The same step's elementwise work as one call of the compiled kernel
    (``csrc/pointwise.cpp``, ``compiled.py``) where it is built and takes the call: a CPU float32
    or float64 call without layer norm (``of`` says). Each keep mask is expanded to ``(T, B, H)``
    once per call, the layout the kernel reads."""

    def __init__(self, kernels, cell, p, x, H, keep):
        self.k, self.coupled = kernels, cell.coupled
        self.peep = p["weight_peephole"].contiguous() if cell.peephole else None
        T, B, _ = x.shape
        self.kh, self.kc = (None if k is None else k.expand(T, B, H).contiguous() for k in keep_masks(keep, 2))

    ln = False  # whether the kernel also does the step's layer norms (CompiledNormStep)

    @staticmethod
    def of(cell, p, x, H, keep):
        if cell.layer_norm or not compiled.usable(x):
            return None
        return CompiledStep(compiled.pointwise(), cell, p, x, H, keep)

    def forward(self, a, gt, cp, cn, Hs, t, C, jn, ax=None):
        """``Gs``, ``c_t`` (``Cn``), ``h_t`` into ``Hs[t+1]`` and, with ``kc``, the mixed ``c_t`` into ``C[jn]``;
        with ``ax`` (the step's input pre-activation) ``a`` is the recurrent product alone, and the
        kernel adds ``ax`` to it. ``gt`` ``None``: no backward reads the gates, and the kernel keeps
        them in its own cache-sized scratch."""
        kh, kc = self.kh, self.kc
        self.k.lstm_forward(a, ax, gt, cp, cn, Hs[t + 1], self.coupled, self.peep, None if kh is None else Hs[t],
                            None if kh is None else kh[t], None if kc is None else kc[t], None if kc is None else C[jn])

    def sequence(self, hh, gx, Hs, C, Gs):
        """Every step of the forward in one kernel call where it takes them (``SEQUENCE``; no keep
        masks, state dropout or layer norm; the input added by the kernel; a packed weight only where
        the kernel can call oneDNN): ``Hs``, ``C`` and ``Gs`` (``None``: not saved) as the loop
        fills them. Returns whether it ran."""
        if not (SEQUENCE and ADD_IN_KERNEL and self.kh is None and self.kc is None and hh.mask is None
                and not hh.ln):
            return False
        weight = hh.prod.kernel_weight(self.k)
        if weight is None:
            return False
        self.k.lstm_sequence_forward(gx, Hs, C, Gs, *weight, self.coupled, self.peep)
        return True

    def backward(self, gt, cp, cn, dh, carry, dy_t, dc, da, carry_out, t):
        """``da`` from ``dh`` (the product's, before ``carry`` and ``dy_t`` are added); ``dc``
        becomes ``dL/dc_{t-1}``; with ``kh``, ``kh``'s share of the step's ``dh`` into ``carry_out``."""
        kh, kc = self.kh, self.kc
        self.k.lstm_backward(gt, cp, cn, dh, carry, dy_t, dc, da, self.coupled, self.peep,
                             None if kh is None else kh[t], None if kc is None else kc[t], carry_out)


class CompiledNormStep(CompiledStep):
    """With layer norm: the input product's and the recurrent product's layer norms, the gates,
    ``c_t``, ``c_t``'s layer norm and ``h_t`` as one call of the compiled kernel
    (``csrc/layernorm.cpp``), forward and backward. It reads both products before their norms (the
    input's from ``input_forward(..., norm_in_step=True)``, the recurrent one from
    ``Recurrent.raw``) and fills what the backward reads of them (the input norm's statistics;
    ``Recurrent``'s ``R``, ``Mu``, ``Rs``; ``dR``); ``TC``, ``CMu``, ``CRs`` as the eager step saves them."""

    ln = True

    def __init__(self, kernels, cell, p, x, H, keep):
        super().__init__(kernels, cell, p, x, H, keep)
        self.gain, self.wc, self.bc, self.gain_x = (p[k].contiguous() for k in
                                                    ("ln_weight_hh", "ln_weight_c", "ln_bias_c", "ln_weight_ih"))
        self.bias_x = self.in_mu = self.in_rs = None

    def bind_input(self, bias, saved, T):
        """The input norm's constants (``bias``: every one added to the pre-activations) and where
        each of the ``T`` steps' statistics go (``in_mu``, ``in_rstd`` of ``input_forward``'s ``saved``)."""
        self.bias_x = bias.contiguous()
        self.in_mu, self.in_rs = (saved[k].view(T, -1) for k in ("in_mu", "in_rstd"))

    @staticmethod
    def of(cell, p, x, H, keep):
        if not cell.layer_norm or H == 0 or not compiled.usable(x):
            return None
        return CompiledNormStep(compiled.pointwise(), cell, p, x, H, keep)

    def forward_norm(self, hh, ax_t, s, save, gt, cp, cn, Hs, t, C, jn, stats):
        """One step from ``h_{t-1}`` (``Hs[t]``) and ``ax_t``, the step's input product before its
        norm: ``Gs``, ``c_t``, ``h_t`` as ``CompiledStep.forward``; ``stats``: ``(TC, CMu, CRs)``,
        filled at ``s``."""
        kh, kc = self.kh, self.kc
        TC, CMu, CRs = stats
        self.k.lstm_ln_forward(hh.raw(Hs[t]), ax_t, self.gain, self.gain_x, self.bias_x, hh.R[s] if save else None,
                               hh.Mu[s], hh.Rs[s], self.in_mu[t], self.in_rs[t], gt,
                               cp, cn, TC[s], CMu[s], CRs[s], self.wc, self.bc, Hs[t + 1], self.coupled, self.peep,
                               None if kh is None else Hs[t], None if kh is None else kh[t],
                               None if kc is None else kc[t], None if kc is None else C[jn], LN_EPS)

    def bind(self, hh, saved, dN):
        """The backward's extra inputs and outputs: the recurrent product's, the saved statistics,
        ``dN``, and each thread's sums of the gains' gradients (``acc``, read by ``gain_grads``)."""
        self.hh, self.saved, self.dN = hh, saved, dN
        N, H = hh.N, dN.shape[-1]
        self.acc = dN.new_zeros(torch.get_num_threads(), N + 2 * H)
        return self

    def gain_grads(self, grads):
        """``ln_weight_hh``, ``ln_weight_c``, ``ln_bias_c``: the threads' sums added up."""
        total = self.acc.sum(0)
        N, H = self.hh.N, self.dN.shape[-1]
        grads["ln_weight_hh"], grads["ln_weight_c"], grads["ln_bias_c"] = total.split([N, H, H])

    def backward(self, gt, cp, cn, dh, carry, dy_t, dc, da, carry_out, t):
        """As ``CompiledStep.backward``; also ``dN[t]`` and the product's gradient ``hh.dR[t]``."""
        kh, kc, hh, sv = self.kh, self.kc, self.hh, self.saved
        self.k.lstm_ln_backward(gt, cp, cn, sv["TC"][t], sv["CMu"][t], sv["CRs"][t], self.wc, dh, carry, dy_t, dc, da,
                                self.dN[t], hh.R[t], hh.Mu[t], hh.Rs[t], self.gain, hh.dR[t], self.coupled, self.peep,
                                None if kh is None else kh[t], None if kc is None else kc[t], carry_out, self.acc)


def compiled_step(cell, p, x, H, keep):
    """The step's compiled kernel where it takes the call (``CompiledStep``, ``CompiledNormStep``), or ``None``."""
    return CompiledNormStep.of(cell, p, x, H, keep) if cell.layer_norm else CompiledStep.of(cell, p, x, H, keep)


def mix_out(Hs, t, o, tc, hnew, kh, C, cn, cp, jn, kc):
    """``h_t = o tanh(c_t)`` into ``Hs[t+1]`` and ``c_t`` into ``C[jn]``, each mixed with the
    previous state where a keep mask says so."""
    if kh is None:
        torch.mul(o, tc, out=Hs[t + 1])
    else:
        lerp_into(Hs[t + 1], torch.mul(o, tc, out=hnew), Hs[t], kh[t])
    if kc is not None:
        lerp_into(C[jn], cn, cp, kc[t])


def _compiled_bptt(cs, Gs, C, Cn, dh, dc, dy, dA, hh):
    """The backward's loop over steps with ``cs`` (a ``CompiledStep``): the kernel adds each
    step's ``dy`` and what zoneout carried past the previous step to the product's ``dh``; returns
    ``dL/dh_0`` (``dc`` becomes ``dL/dc_0`` in place)."""
    T = dA.shape[0]
    dy = None if dy is None else dy.contiguous()
    carries = (torch.empty_like(dh), torch.empty_like(dh)) if cs.kh is not None else (None, None)
    carry = None
    for t in reversed(range(T)):
        out = carries[t % 2]
        cs.backward(Gs[t], C[t], Cn[t + 1], dh, carry, None if dy is None else dy[t], dc, dA[t], out, t)
        carry = out
        dh = hh.product_backward(hh.dR[t]) if cs.ln else hh.backward(dA[t], t)
    return dh if carry is None else dh.add_(carry)


class LSTMLoop:
    name = "lstm"
    #: cell name -> option -> the values this loop computes (``...``: any); an option it does not
    #: name must keep the cell's default (read by torch_engine/capability.py)
    handles = {"lstm": _FAMILY, "peephole": _FAMILY, "cifg": _FAMILY,
               "mogrifier": {**_FAMILY, "rounds": (0,), "rank": ...}}  # rounds = 0 is the LSTM

    @staticmethod
    def forward(cell, p, x, state, save, keep=None):
        T, B, I = x.shape
        G = cell.num_gates
        H = p["weight_hh"].shape[0] // G
        ln = cell.layer_norm
        kh, kc = keep_masks(keep, 2)
        S = T if save else 1
        cs = compiled_step(cell, p, x, H, keep)
        bias = combined_bias(cell, p, G, H, x)
        gx, saved = input_forward(cell, p, x, bias, norm_in_step=cs is not None and cs.ln)
        if cs is not None and cs.ln:
            cs.bind_input(bias, saved, T)
        hh = Recurrent(cell, p, B, S, x)
        pw = Pointwise(cell, p, x, H)
        h0, c0 = state
        Hs, = buffers.carve(x, [(T + 1, B, H)])  # h_0 .. h_T; y is Hs[1:], an allocation of its own
        Hs[0] = h0
        nC = T + 1 if save else 2
        # C: the state c, after zoneout; Gs: the post-activation gates; TC: tanh(LN(c_t)) (saved with
        # layer norm); Cn: the cell's c_t, before zoneout
        C, Gs, TC, CMu, CRs, *Cn = buffers.carve(x, [(nC, B, H), (S, B, G * H), (S if ln else 1, B, H),
                                                     *([(S, B, 1)] * 2 if ln else [(0,)] * 2),
                                                     *([(nC, B, H)] if kc is not None else [])])
        C[0] = c0
        Cn = C if kc is None else Cn[0]
        CMu, CRs = (CMu, CRs) if ln else (None, None)
        hnew = x.new_empty(B, H) if kh is not None else None
        one_call = cs is not None and cs.sequence(hh, gx, Hs, C, Gs if save else None)
        for t in range(0 if one_call else T):
            s = t if save else 0
            j, jn = (t, t + 1) if save else (t % 2, (t + 1) % 2)
            cp, cn = C[j], Cn[jn]
            if cs is not None and cs.ln:
                cs.forward_norm(hh, gx[t], s, save, Gs[s], cp, cn, Hs, t, C, jn, (TC, CMu, CRs))
                continue
            if cs is not None:  # the kernel adds gx[t] to the product's fresh output (ADD_IN_KERNEL)
                ax = gx[t] if ADD_IN_KERNEL else None
                cs.forward(hh(Hs[t], s, None if ADD_IN_KERNEL else gx[t]), Gs[s] if save else None, cp, cn, Hs, t, C, jn,
                           ax)
                continue
            a = hh(Hs[t], s, gx[t])  # (B, G*H), a fresh tensor
            tc = TC[s if ln else 0]
            o = pw.forward(a, Gs[s], cp, cn, tc, (CMu, CRs, s))
            mix_out(Hs, t, o, tc, hnew, kh, C, cn, cp, jn, kc)
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
        ln = cell.layer_norm
        (kh, kc), (nkh, nkc) = keep_masks(keep, 2, complement=True)
        pw = Pointwise(cell, p, x, H, saved)
        hh = Recurrent(cell, p, B, T, x, saved, backward=True)
        dh_n, dc_n = dstate
        dc = torch.zeros_like(C[0]) if dc_n is None else dc_n.clone(memory_format=torch.contiguous_format)
        dh = torch.zeros_like(C[0]) if dh_n is None else dh_n
        dA = buffers.scratch("lstm.dA", x, T, B, G * H)
        dN = buffers.scratch("lstm.dN", x, T, B, H) if ln else None  # dL/d LN(c_t), for the gains
        cs = compiled_step(cell, p, x, H, keep)
        if cs is not None and cs.ln:
            cs.bind(hh, saved, dN)
        ln_grads = {}  # the gains' and ln_bias_c's gradients where the kernel summed them
        if cs is not None:
            dh = _compiled_bptt(cs, Gs, C, Cn, dh.contiguous(), dc, dy, dA, hh)
            if cs.ln:
                cs.gain_grads(ln_grads)
                hh.gain_grad = ln_grads.pop("ln_weight_hh")
        for t in reversed(range(T) if cs is None else ()):
            if dy is not None:
                dh = dh + dy[t]
            carry_h, dh = split_carry(dh, kh, nkh, t)  # zoneout: the kept share goes straight back
            carry_c, dc = split_carry(dc, kc, nkc, t)
            pw.backward(Gs[t], C[t], Cn[t + 1], dh, dc, dA[t], t, dN)
            add_carry(dc, carry_c)
            dh = add_carry(hh.backward(dA[t], t), carry_h)
        grads = summed_products_grads(cell, p, x, saved, hh, dA, Hs, need_dx)
        if cell.peephole:
            ii, fi, oi = pw.ii, pw.fi, pw.oi
            prev, cur = rows(C[:-1]), rows(Cn[1:])
            dA2 = rows(dA)
            grads["weight_peephole"] = torch.cat([
                (dA2[:, ii * H : (ii + 1) * H] * prev).sum(0),
                (dA2[:, fi * H : (fi + 1) * H] * prev).sum(0),
                (dA2[:, oi * H : (oi + 1) * H] * cur).sum(0),
            ])
        grads.update(ln_grads)
        if ln and not ln_grads:
            c_hat = (Cn[1:] - saved["CMu"]).mul_(saved["CRs"])
            grads["ln_weight_c"] = (rows(dN) * rows(c_hat)).sum(0)
            grads["ln_bias_c"] = sum_rows(dN)
        return grads, (dh, dc)
