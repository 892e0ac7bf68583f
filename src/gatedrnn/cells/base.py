"""What every cell is: a parameter spec, a forward step and a hand-derived backward step.

A cell is a small frozen object holding its options (not its sizes: those are read off the
parameters). Its math is written once against an array namespace ``ops`` (``NUMPY_OPS`` here,
a torch twin in ``gatedrnn.torch_engine``), so the NumPy reference, the autograd loop and the
fused engine all run the same lines.

The protocol, for one layer and one direction (shapes use the legend of DESIGN.md; ``R`` is the
size of ``h``: ``H``, or ``P`` with a projection):

    gx, cache = cell.input_proj(ops, p, x)            # x (T, B, I) -> gx (T, B, G*H), hoisted
    state, cache_t = cell.step(ops, p, gx[t], state)  # state: (h,) or (h, c); h (B, R), c (B, H)
    dgx_t, dstate_prev = cell.step_backward(ops, p, cache_t, dstate, grads)
    dx = cell.input_proj_backward(ops, p, cache, dgx, grads)

``step_backward`` receives the gradient of everything after step ``t`` with respect to the state
the step returned, adds the parameter gradients of the step into ``grads`` and returns the
gradient with respect to its ``gx_t`` input and to the state it was given. A cell whose input
cannot be projected ahead of the loop (the Mogrifier) makes ``input_proj`` the identity and does
the projection inside ``step``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: its shape and how to initialise it.

    ``init`` is ``"uniform"`` (in ``[-bound, bound]``), ``"ones"`` or ``"zeros"``; ``fill`` holds
    ``(start, stop, value)`` runs of the flattened parameter set to a constant afterwards (a
    forget-gate bias initialisation).
    """

    name: str
    shape: tuple[int, ...]
    init: str = "uniform"
    bound: float = 0.0
    fill: tuple[tuple[int, int, float], ...] = field(default=())


class NumpyOps:
    """The array namespace the cells are written against, for NumPy arrays."""

    name = "numpy"

    @staticmethod
    def sigmoid(a):
        return 0.5 * (1.0 + np.tanh(0.5 * a))  # no overflow for large |a|

    tanh = staticmethod(np.tanh)

    @staticmethod
    def relu(a):
        return np.maximum(a, 0)

    @staticmethod
    def positive(a):  # 1 where a > 0 else 0, in a's dtype
        return (a > 0).astype(a.dtype)

    @staticmethod
    def mean_last(a):
        return a.mean(-1, keepdims=True)

    @staticmethod
    def rsqrt(a):
        return 1.0 / np.sqrt(a)

    @staticmethod
    def cat(arrays, axis=-1):
        return np.concatenate(arrays, axis=axis)

    @staticmethod
    def stack(arrays, axis=0):
        return np.stack(arrays, axis=axis)

    zeros_like = staticmethod(np.zeros_like)
    exp = staticmethod(np.exp)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)

    @staticmethod
    def log_sigmoid(a):
        return -np.logaddexp(0.0, -a)  # log(1 / (1 + e^-a)), no overflow for large |a|

    @staticmethod
    def stop_gradient(a):  # the torch twin detaches; NumPy has no graph to cut
        return a

    @staticmethod
    def new_zeros(like, shape):
        return np.zeros(shape, dtype=like.dtype)

    @staticmethod
    def keep_mix(keep, prev, new):  # zoneout and padding: keep * prev + (1 - keep) * new
        return keep * prev + (1.0 - keep) * new


NUMPY_OPS = NumpyOps()


def accumulate(grads: dict, key: str, value) -> None:
    """``grads[key] += value``, creating the entry on first use."""
    if key in grads:
        grads[key] = grads[key] + value
    else:
        grads[key] = value


def sum_rows(a):
    """Sum over every leading dimension: ``(..., N) -> (N,)``."""
    return a.reshape(-1, a.shape[-1]).sum(0)


def rows_t_at(a, b):
    """``sum over rows of a_row^T b_row``: ``(..., N), (..., M) -> (N, M)``."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


LN_EPS = 1e-5


def init_bound(fan: int) -> float:
    """``1 / sqrt(fan)``, the bound of ``torch.nn``'s uniform initialisation; 0 for an empty
    dimension (a zero-size cell, which ``torch.nn``'s cells accept)."""
    return 1.0 / math.sqrt(fan) if fan > 0 else 0.0


def layer_norm(ops, a):
    """Normalise over the last axis; returns the normalised ``a_hat`` and ``1/std``."""
    mu = ops.mean_last(a)
    centred = a - mu
    rstd = ops.rsqrt(ops.mean_last(centred * centred) + LN_EPS)
    return centred * rstd, rstd


def layer_norm_backward(d_hat, a_hat, rstd, ops):
    """Gradient through ``a_hat = (a - mean(a)) * rstd`` given ``d_hat = dL/da_hat``."""
    return rstd * (d_hat - ops.mean_last(d_hat) - a_hat * ops.mean_last(d_hat * a_hat))


ACTIVATIONS = ("tanh", "identity")


def activate(ops, name, a):
    return ops.tanh(a) if name == "tanh" else a


def activate_grad(name, y):
    """Derivative of the activation, written in terms of its output ``y``."""
    return 1.0 - y * y if name == "tanh" else 1.0


class Cell:
    """Base class: subclasses set ``name``, ``has_cell_state``, ``options`` and the math."""

    name: str = ""
    #: the state is a tuple ``(h, c, ...)`` rather than ``h`` alone
    has_cell_state: bool = False
    #: the names of the state's elements, in order (``h0``, ``c0``, ... for the initial state)
    state_names: tuple = ("h",)
    #: whether the cell multiplies ``h_{t-1}`` by a weight matrix (what state dropout masks)
    has_recurrent_product: bool = True
    #: whether zoneout (each state element kept or updated on its own) is defined for the cell
    supports_zoneout: bool = True
    #: state elements that are positive in any state the cell reaches (the sLSTM's normaliser)
    positive_state: tuple = ()
    #: option name -> default, the options this cell accepts (validated in ``__init__``)
    options: dict = {}
    #: option name -> values other than the default that exercise it; every option has some, so
    #: the engines' tests can enumerate each option (tests/torch_engine/test_capability.py)
    option_samples: dict = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(
                f"cell {self.name!r} got unknown option(s) {unknown}; "
                f"expected some of {sorted(self.options)}"
            )
        self.config = {**self.options, **options}
        for key, value in self.config.items():
            setattr(self, key, value)
        self.validate()

    def validate(self) -> None:
        bias = self.config.get("bias", True)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be True or False, got {bias!r}")
        if self.config.get("layer_norm") not in (None, True, False):
            raise ValueError(f"layer_norm must be True or False, got {self.config['layer_norm']!r}")

    def __repr__(self):
        changed = {k: v for k, v in self.config.items() if v != self.options[k]}
        args = ", ".join(f"{k}={v!r}" for k, v in changed.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and self.config == other.config

    def __hash__(self):
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in self.config.items()))))

    # -- sizes and parameters -------------------------------------------------------------
    num_gates: int = 1

    def state_sizes(self, hidden_size: int) -> tuple[int, ...]:
        """Feature size of each state element: ``(R,)`` or ``(R, H)``."""
        return (hidden_size,)

    def sample_state(self, rng, batch: int, hidden_size: int) -> list:
        """A random state a gradient check may start from (standard normal by default)."""
        return [rng.standard_normal((batch, s)) for s in self.state_sizes(hidden_size)]

    def invariant_dstate(self, state, d_state):
        """The gradient a loss on the final state may carry, made to respect the state's symmetries.

        Every state element matters by default, and ``d_state`` is returned unchanged; a cell whose
        state holds a redundancy (the sLSTM's stabiliser) projects out the direction no output can
        see, so a gradient check compares what the cell's backward defines.
        """
        return d_state

    def observed_state(self, ops, state):
        """The state as what it stands for: the state itself, or (sLSTM) with the redundancy of its
        representation taken out. A loss on this has every gradient the cell's backward defines."""
        return state

    def output_size(self, hidden_size: int) -> int:
        return self.state_sizes(hidden_size)[0]

    def param_spec(self, input_size: int, hidden_size: int) -> list[ParamSpec]:
        raise NotImplementedError

    def hidden_size_of(self, params) -> int:
        return params["weight_hh"].shape[0] // self.num_gates

    def input_size_of(self, params) -> int:
        return params["weight_ih"].shape[1]

    # -- the linear maps shared by every cell -----------------------------------------------
    def project(self, ops, p, x, kind):
        """``x @ weight_{kind}.T (+ bias)``, layer-normalised when ``layer_norm`` is on.

        ``kind`` is ``"ih"`` (input) or ``"hh"`` (recurrent). With layer norm (haste's layout):
        ``LN(x W^T) * ln_weight_{kind} (+ ln_bias_hh) (+ bias_{kind})``. An optional entry
        ``mask_{kind}`` of ``p`` (not a parameter; ``(B, ·)``, broadcast over the rows of ``x``)
        multiplies ``x`` first: variational dropout of the state that feeds the recurrent product
        (``mask_hh``, Gal and Ghahramani 2016), one mask for every step of a sequence.
        """
        mask = p.get(f"mask_{kind}")
        if mask is not None:
            x = x * mask  # only the product sees the dropped state; the cell's other uses do not
        a = x @ p[f"weight_{kind}"].T  # (..., G*H)
        a_hat = rstd = None
        if self.layer_norm:
            a_hat, rstd = layer_norm(ops, a)
            a = a_hat * p[f"ln_weight_{kind}"]
            if kind == "hh":
                a = a + p["ln_bias_hh"]
        if self.bias:
            a = a + p[f"bias_{kind}"]
        return a, (x, a_hat, rstd)

    def project_backward(self, ops, p, cache, da, kind, grads):
        """Adds the gradients of ``project`` to ``grads``; returns ``dL/dx``."""
        x, a_hat, rstd = cache
        if self.bias:
            accumulate(grads, f"bias_{kind}", sum_rows(da))
        if self.layer_norm:
            if kind == "hh":
                accumulate(grads, "ln_bias_hh", sum_rows(da))
            accumulate(grads, f"ln_weight_{kind}", sum_rows(da * a_hat))
            da = layer_norm_backward(da * p[f"ln_weight_{kind}"], a_hat, rstd, ops)
        accumulate(grads, f"weight_{kind}", rows_t_at(da, x))  # x: the masked input, as saved
        dx = da @ p[f"weight_{kind}"]
        mask = p.get(f"mask_{kind}")
        return dx if mask is None else dx * mask

    def input_proj(self, ops, p, x):
        return self.project(ops, p, x, "ih")

    def input_proj_backward(self, ops, p, cache, dgx, grads):
        return self.project_backward(ops, p, cache, dgx, "ih", grads)

    def linear_spec(self, input_size, hidden_size, state_size) -> list[ParamSpec]:
        """``weight_ih``, ``weight_hh``, biases and layer-norm gains, as ``torch.nn`` lays them out."""
        gh = self.num_gates * hidden_size
        bound = init_bound(hidden_size)
        spec = [
            ParamSpec("weight_ih", (gh, input_size), bound=bound),
            ParamSpec("weight_hh", (gh, state_size), bound=bound),
        ]
        if self.bias:
            spec += [ParamSpec("bias_ih", (gh,), bound=bound), ParamSpec("bias_hh", (gh,), bound=bound)]
        if self.layer_norm:
            spec += [
                ParamSpec("ln_weight_ih", (gh,), init="ones"),
                ParamSpec("ln_weight_hh", (gh,), init="ones"),
                ParamSpec("ln_bias_hh", (gh,), init="zeros"),
            ]
        return spec

    # -- the step ---------------------------------------------------------------------------
    def step(self, ops, p, gx, state):
        raise NotImplementedError

    def step_backward(self, ops, p, cache, dstate, grads):
        raise NotImplementedError


def init_array(spec: ParamSpec, rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Initialise one parameter as its spec says (the NumPy twin of the torch initialiser)."""
    if spec.init == "uniform":
        a = rng.uniform(-spec.bound, spec.bound, size=spec.shape)
    elif spec.init == "ones":
        a = np.ones(spec.shape)
    elif spec.init == "zeros":
        a = np.zeros(spec.shape)
    else:
        raise ValueError(f"unknown init {spec.init!r}")
    flat = a.reshape(-1)
    for start, stop, value in spec.fill:
        flat[start:stop] = value
    return a.astype(dtype)
