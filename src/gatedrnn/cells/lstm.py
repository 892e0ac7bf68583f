"""The LSTM family: ``lstm``, ``peephole``, ``cifg`` (and, composing this step, ``mogrifier``).

Equations (``sigma`` the logistic function, ``*`` elementwise, blocks of ``a`` in the order of
``gates``, ``i, f, g, o`` by default):

    a    = proj_ih(x) + proj_hh(h)                   # (B, G*H); proj = x W^T + b, or layer-normed
    f    = sigma(a_f + forget_bias + w_f * c_{t-1})  # peephole term w_f * c_{t-1} for ``peephole``
    i    = sigma(a_i + w_i * c_{t-1})                # CIFG: i = 1 - f
    g    = act_in(a_g)                               # act_in: tanh (or identity)
    c_t  = f * c_{t-1} + i * g
    n_t  = LN(c_t) * ln_weight_c + ln_bias_c         # layer norm only; n_t = c_t otherwise
    o    = sigma(a_o + w_o * c_t)                    # the output peephole looks at c_t
    m_t  = o * act_out(n_t)                          # act_out: tanh (or identity)
    h_t  = m_t W_hr^T                                # projection (LSTMP) only; h_t = m_t otherwise

A gate in ``drop_gates`` is fixed at 1 and its block removed (Greff et al. 2017). The
Mogrifier (``cells/mogrifier.py``) runs this step on a modulated ``x`` and ``h``.
"""
from __future__ import annotations

import numbers

from .base import (
    ACTIVATIONS,
    Cell,
    ParamSpec,
    accumulate,
    activate,
    activate_grad,
    init_bound,
    layer_norm,
    layer_norm_backward,
)

GATES = ("i", "f", "g", "o")
DROPPABLE = ("i", "f", "o")


class LSTMFamily(Cell):
    """An LSTM step with every option of the family; the registry names configurations of it."""

    has_cell_state = True
    state_names = ("h", "c")
    #: fixed by the cell name, not user options
    peephole = False
    coupled = False
    drop_gates = ()
    options = {
        "bias": True,
        "forget_bias": 0.0,
        "forget_bias_init": None,
        "proj_size": 0,
        "layer_norm": False,
        "drop_gates": (),
        "input_activation": "tanh",
        "output_activation": "tanh",
    }
    option_samples = {
        "bias": (False,),
        "forget_bias": (1.0, -0.5),
        "forget_bias_init": (1.0,),
        "proj_size": (2,),
        "layer_norm": (True,),
        "drop_gates": (("i",), ("f", "o"), ("i", "o")),
        "input_activation": ("identity",),
        "output_activation": ("identity",),
    }

    def validate(self):
        super().validate()
        if "drop_gates" in self.config:
            gates = self.drop_gates or ()  # None: none dropped
            if isinstance(gates, str):  # a sequence of names, as ("i", "o"); "i,o" is parsed by the CLI
                raise ValueError(f"drop_gates takes a sequence of gates among {DROPPABLE}, such as ('i', 'o'), "
                                 f"got the string {gates!r}")
            bad = [g for g in gates if g not in DROPPABLE]
            if bad:
                raise ValueError(f"drop_gates takes gates among {DROPPABLE}, got {bad}")
            self.drop_gates = self.config["drop_gates"] = tuple(g for g in DROPPABLE if g in gates)
        for key in ("input_activation", "output_activation"):
            if self.config.get(key, "tanh") not in ACTIVATIONS:
                raise ValueError(f"{key} must be one of {ACTIVATIONS}, got {self.config[key]!r}")
        if not isinstance(self.forget_bias, numbers.Real) or isinstance(self.forget_bias, bool):
            raise ValueError(f"forget_bias must be a number, got {self.forget_bias!r}")
        # a Python float keeps float32 runs float32 (a NumPy float64 scalar would promote them),
        # and makes forget_bias=1 and 1.0 the same cell with the same hash
        self.forget_bias = self.config["forget_bias"] = float(self.forget_bias)
        if not isinstance(self.proj_size, int) or isinstance(self.proj_size, bool) or self.proj_size < 0:
            raise ValueError(f"proj_size should be a non-negative integer, got {self.proj_size!r}")
        if "f" not in self.gates and (self.forget_bias or self.forget_bias_init is not None):
            raise ValueError("forget_bias and forget_bias_init need the forget gate, which drop_gates removes")
        if self.forget_bias_init is not None and not self.bias:
            raise ValueError("forget_bias_init is stored in the biases, but bias=False")

    @property
    def gates(self) -> tuple[str, ...]:
        """The gate blocks present in the weights, in ``torch.nn`` order."""
        if self.coupled:
            return ("f", "g", "o")
        return tuple(g for g in GATES if g not in self.config.get("drop_gates", ()))

    @property
    def num_gates(self) -> int:
        return len(self.gates)

    @property
    def peep_gates(self) -> tuple[str, ...]:
        return tuple(g for g in ("i", "f", "o") if g in self.gates) if self.peephole else ()

    def state_sizes(self, hidden_size):
        return (self.proj_size or hidden_size, hidden_size)

    def param_spec(self, input_size, hidden_size):
        H, R = hidden_size, self.proj_size or hidden_size
        if self.proj_size and self.proj_size >= hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size, got proj_size={self.proj_size} "
                f"and hidden_size={hidden_size}"
            )
        spec = self.linear_spec(input_size, H, R)
        if self.forget_bias_init is not None:
            k = self.gates.index("f")
            spec = [
                ParamSpec(s.name, s.shape, s.init, s.bound, ((k * H, (k + 1) * H, float(self.forget_bias_init)),))
                if s.name == "bias_ih"
                else ParamSpec(s.name, s.shape, s.init, s.bound, ((k * H, (k + 1) * H, 0.0),))
                if s.name == "bias_hh"
                else s
                for s in spec
            ]
        bound = init_bound(H)
        if self.peep_gates:
            spec.append(ParamSpec("weight_peephole", (len(self.peep_gates) * H,), bound=bound))
        if self.layer_norm:
            spec += [ParamSpec("ln_weight_c", (H,), init="ones"), ParamSpec("ln_bias_c", (H,), init="zeros")]
        if self.proj_size:
            spec.append(ParamSpec("weight_hr", (R, H), bound=bound))
        return spec

    # -- forward ----------------------------------------------------------------------------
    def step(self, ops, p, gx, state):
        h_prev, c_prev = state  # (B, R), (B, H)
        cache = {"c_prev": c_prev}
        gh, cache["hh"] = self.project(ops, p, h_prev, "hh")
        a = gx + gh  # (B, G*H)
        H = c_prev.shape[-1]
        blocks = {name: a[..., k * H : (k + 1) * H] for k, name in enumerate(self.gates)}
        peep = {name: p["weight_peephole"][k * H : (k + 1) * H] for k, name in enumerate(self.peep_gates)}

        f = i = o = None  # None: the gate is fixed at 1
        if "f" in blocks:
            a_f = blocks["f"] + self.forget_bias if self.forget_bias else blocks["f"]
            f = ops.sigmoid(a_f + peep["f"] * c_prev if "f" in peep else a_f)
        if self.coupled:
            i = 1.0 - f
        elif "i" in blocks:
            i = ops.sigmoid(blocks["i"] + peep["i"] * c_prev if "i" in peep else blocks["i"])
        g = activate(ops, self.input_activation, blocks["g"])
        c = (c_prev if f is None else f * c_prev) + (g if i is None else i * g)
        n = c
        if self.layer_norm:
            c_hat, c_rstd = layer_norm(ops, c)
            n = c_hat * p["ln_weight_c"] + p["ln_bias_c"]
            cache.update(c_hat=c_hat, c_rstd=c_rstd)
        if "o" in blocks:
            o = ops.sigmoid(blocks["o"] + peep["o"] * c if "o" in peep else blocks["o"])
        t = activate(ops, self.output_activation, n)
        m = t if o is None else o * t
        h_new = m @ p["weight_hr"].T if self.proj_size else m
        cache.update(f=f, i=i, g=g, c=c, o=o, t=t, m=m)
        return (h_new, c), cache

    # -- backward: the forward read bottom-up ------------------------------------------------
    def step_backward(self, ops, p, cache, dstate, grads):
        dh, dc = dstate  # gradients w.r.t. this step's h_t (B, R) and c_t (B, H)
        f, i, g, c, o, t, m = (cache[k] for k in ("f", "i", "g", "c", "o", "t", "m"))
        c_prev = cache["c_prev"]
        H = c.shape[-1]
        peep = {name: p["weight_peephole"][k * H : (k + 1) * H] for k, name in enumerate(self.peep_gates)}
        da, dpeep = {}, {}

        if self.proj_size:
            accumulate(grads, "weight_hr", dh.T @ m)
            dm = dh @ p["weight_hr"]
        else:
            dm = dh
        dt = dm if o is None else dm * o
        dn = dt * activate_grad(self.output_activation, t)
        if self.layer_norm:
            accumulate(grads, "ln_bias_c", dn.sum(0))
            accumulate(grads, "ln_weight_c", (dn * cache["c_hat"]).sum(0))
            dn = layer_norm_backward(dn * p["ln_weight_c"], cache["c_hat"], cache["c_rstd"], ops)
        dc = dc + dn
        if o is not None:
            da["o"] = dm * t * o * (1.0 - o)
            if "o" in peep:
                dpeep["o"] = (da["o"] * c).sum(0)
                dc = dc + da["o"] * peep["o"]
        dc_prev = dc if f is None else dc * f
        dg = dc if i is None else dc * i
        da["g"] = dg * activate_grad(self.input_activation, g)
        di = None if i is None else dc * g
        if f is not None:
            df = dc * c_prev
            if self.coupled:
                df = df - di  # i = 1 - f
            da["f"] = df * f * (1.0 - f)
        if i is not None and not self.coupled:
            da["i"] = di * i * (1.0 - i)
        for name in ("i", "f"):
            if name in peep:
                dpeep[name] = (da[name] * c_prev).sum(0)
                dc_prev = dc_prev + da[name] * peep[name]
        if self.peep_gates:
            accumulate(grads, "weight_peephole", ops.cat([dpeep[name] for name in self.peep_gates]))

        da = ops.cat([da[name] for name in self.gates])  # (B, G*H)
        dh_prev = self.project_backward(ops, p, cache["hh"], da, "hh", grads)
        return da, (dh_prev, dc_prev)


class LSTMMath(LSTMFamily):
    """Long short-term memory (Hochreiter and Schmidhuber 1997, with the forget gate of Gers et
    al. 2000), gate blocks ``i, f, g, o`` as in ``torch.nn.LSTM``. ``forget_bias`` is added to
    the forget gate's pre-activation at compute time (TensorFlow's ``BasicLSTMCell``)."""

    name = "lstm"


class PeepholeLSTMMath(LSTMFamily):
    """LSTM with diagonal peephole connections (Gers and Schmidhuber 2000): ``i`` and ``f`` see
    ``c_{t-1}``, ``o`` sees ``c_t``; ``weight_peephole`` holds ``w_i, w_f, w_o``."""

    name = "peephole"
    peephole = True


class CIFGMath(LSTMFamily):
    """Coupled input-forget gate LSTM (Greff et al. 2017): blocks ``f, g, o`` and ``i = 1 - f``."""

    name = "cifg"
    coupled = True
    options = {k: v for k, v in LSTMFamily.options.items() if k != "drop_gates"}
    option_samples = {k: v for k, v in LSTMFamily.option_samples.items() if k != "drop_gates"}
