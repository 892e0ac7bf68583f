"""Mogrifier LSTM (Melis et al. 2020): ``x`` and ``h`` gate each other, then an LSTM step.

Before each step, for ``j = 1..rounds`` (``sigma`` the logistic function, ``*`` elementwise):

    odd  j:  x = 2 sigma(h Q_k^T) * x        k = (j - 1) // 2,  Q_k (I, R)
    even j:  h = 2 sigma(x R_k^T) * h        k = j // 2 - 1,    R_k (R, I)

then the LSTM step of ``cells/lstm.py`` on the modulated ``x`` and ``h`` (``c_{t-1}`` is not
modulated). With ``rank`` set, ``Q_k = Q_left_k Q_right_k`` (and ``R_k`` likewise). The input
product cannot be hoisted out of the loop, since ``x`` depends on ``h_{t-1}``: ``input_proj`` is
the identity and the step projects. ``rounds = 0`` is exactly the LSTM.
"""
from __future__ import annotations

from .base import ParamSpec, accumulate, init_bound
from .lstm import CIFGMath, LSTMFamily


class MogrifierMath(LSTMFamily):
    """Mogrifier LSTM: ``rounds`` rounds of mutual gating, then the LSTM family's step."""

    name = "mogrifier"
    options = {**CIFGMath.options, "rounds": 5, "rank": None}
    option_samples = {**CIFGMath.option_samples, "rounds": (0, 1, 2, 3), "rank": (2, 1)}

    def validate(self):
        super().validate()
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 0:
            raise ValueError(f"rounds must be a non-negative integer, got {self.rounds!r}")
        if self.rank is not None and (not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank <= 0):
            raise ValueError(f"rank must be a positive integer or None, got {self.rank!r}")

    # -- parameters -------------------------------------------------------------------------
    def param_spec(self, input_size, hidden_size):
        R = self.proj_size or hidden_size  # Q and R read the (projected) h
        nq, nr = (self.rounds + 1) // 2, self.rounds // 2
        spec = super().param_spec(input_size, hidden_size)
        for name, n, rows, cols in (("q", nq, input_size, R), ("r", nr, R, input_size)):
            if n == 0:
                continue
            if self.rank is None:
                spec.append(ParamSpec(f"weight_{name}", (n, rows, cols), bound=init_bound(cols)))
            else:
                k = self.rank
                spec.append(ParamSpec(f"weight_{name}_left", (n, rows, k), bound=init_bound(k)))
                spec.append(ParamSpec(f"weight_{name}_right", (n, k, cols), bound=init_bound(cols)))
        return spec

    def matrix(self, p, name, k):
        """``Q_k`` ``(I, R)`` (``name="q"``) or ``R_k`` ``(R, I)`` (``"r"``), full or as the
        product of its two factors."""
        if self.rank is None:
            return p[f"weight_{name}"][k]
        return p[f"weight_{name}_left"][k] @ p[f"weight_{name}_right"][k]

    # -- forward ----------------------------------------------------------------------------
    def input_proj(self, ops, p, x):
        if self.rounds:
            return x, None  # x is gated by h inside each step, then projected there
        return super().input_proj(ops, p, x)

    def step(self, ops, p, gx, state):
        if not self.rounds:
            return super().step(ops, p, gx, state)
        h_prev, c_prev = state  # gx is x_t itself (see input_proj)
        x, h, mog = self.mogrify(ops, p, gx, h_prev)
        gx, ih = self.project(ops, p, x, "ih")
        new, cache = super().step(ops, p, gx, (h, c_prev))
        cache.update(mog=mog, ih=ih)
        return new, cache

    def mogrify(self, ops, p, x, h):
        saved = []
        for j in range(1, self.rounds + 1):
            if j % 2:  # x is gated by h
                k = (j - 1) // 2
                s = ops.sigmoid(h @ self.matrix(p, "q", k).T)  # (B, I)
                saved.append((x, h, s))
                x = 2.0 * s * x
            else:  # h is gated by x
                k = j // 2 - 1
                s = ops.sigmoid(x @ self.matrix(p, "r", k).T)  # (B, R)
                saved.append((x, h, s))
                h = 2.0 * s * h
        return x, h, saved

    # -- backward: the forward read bottom-up ------------------------------------------------
    def input_proj_backward(self, ops, p, cache, dgx, grads):
        if self.rounds:
            return dgx
        return super().input_proj_backward(ops, p, cache, dgx, grads)

    def step_backward(self, ops, p, cache, dstate, grads):
        if not self.rounds:
            return super().step_backward(ops, p, cache, dstate, grads)
        da, (dh, dc_prev) = super().step_backward(ops, p, cache, dstate, grads)  # dh: of the modulated h
        dx = self.project_backward(ops, p, cache["ih"], da, "ih", grads)
        dx, dh_prev = self.mogrify_backward(ops, p, cache["mog"], dx, dh, grads)
        return dx, (dh_prev, dc_prev)

    def mogrify_backward(self, ops, p, saved, dx, dh, grads):
        dmats = {"q": {}, "r": {}}
        for j in range(self.rounds, 0, -1):
            x, h, s = saved[j - 1]
            if j % 2:  # x_out = 2 s x, s = sigma(h Q^T)
                k = (j - 1) // 2
                dz = dx * 2.0 * x * s * (1.0 - s)
                dx = dx * 2.0 * s
                dmats["q"][k] = dz.T @ h
                dh = dh + dz @ self.matrix(p, "q", k)
            else:  # h_out = 2 s h, s = sigma(x R^T)
                k = j // 2 - 1
                dz = dh * 2.0 * h * s * (1.0 - s)
                dh = dh * 2.0 * s
                dmats["r"][k] = dz.T @ x
                dx = dx + dz @ self.matrix(p, "r", k)
        for name, per_k in dmats.items():
            if not per_k:
                continue
            ks = range(len(per_k))
            if self.rank is None:
                accumulate(grads, f"weight_{name}", ops.stack([per_k[k] for k in ks]))
            else:
                left, right = p[f"weight_{name}_left"], p[f"weight_{name}_right"]
                accumulate(grads, f"weight_{name}_left", ops.stack([per_k[k] @ right[k].T for k in ks]))
                accumulate(grads, f"weight_{name}_right", ops.stack([left[k].T @ per_k[k] for k in ks]))
        return dx, dh
