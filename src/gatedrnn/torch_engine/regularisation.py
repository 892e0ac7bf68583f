"""Regularisation that respects the recurrence: zoneout, variational dropout, DropConnect.

Options of every module (``gatedrnn.LSTM(..., zoneout=0.1, dropout_state=0.25)``), none of them a
parameter, all drawn from the module's ``generator`` (a ``torch.Generator``, or the global
generator when ``None``), so that two engines given the same seed see the same masks:

- ``zoneout`` (or ``zoneout_h``, ``zoneout_c``), Krueger et al. 2017: in training each unit of the
  state keeps its previous value with probability ``p``, per step, unit and batch row; in
  evaluation the state is the expectation ``p * s_{t-1} + (1 - p) * s_t``.
- ``dropout_input``: variational (locked) dropout of the first layer's input, one mask per sequence.
- ``dropout_between``: locked dropout of each layer's output that feeds the next layer (the
  variational form of ``torch.nn``'s ``dropout``, which stays as ``torch.nn`` has it: a fresh
  mask per step).
- ``dropout_output``: locked dropout of the last layer's output.
- ``dropout_state``: variational dropout of the ``h`` that feeds the recurrent product (Gal and
  Ghahramani 2016), one mask per sequence, layer and direction.
- ``weight_drop``: DropConnect on ``weight_hh`` (Merity et al. 2018, AWD-LSTM), one mask per
  forward call; the stored parameter is unchanged and receives the gradient.

``embedding_dropout`` (for a language model's embedding) drops whole words, as AWD-LSTM does.

Dropout masks are scaled by ``1 / (1 - p)``. All of it is off in evaluation except zoneout,
which there is its expectation. Masks are drawn in float32 on the generator's device, so a seed
gives the same masks in every dtype; the order of the draws is that of ``draw_masks``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from . import compiled
from .ops import eager

#: dropout-like options, each a probability in [0, 1)
DROPOUTS = ("dropout_input", "dropout_between", "dropout_output", "dropout_state", "weight_drop")
#: every option this module adds to the modules' constructors
OPTIONS = ("zoneout", "zoneout_h", "zoneout_c") + DROPOUTS


@dataclass(frozen=True)
class Regularisation:
    """The probabilities, validated; ``0.0`` is off."""

    zoneout_h: float = 0.0
    zoneout_c: float = 0.0
    dropout_input: float = 0.0
    dropout_between: float = 0.0
    dropout_output: float = 0.0
    dropout_state: float = 0.0
    weight_drop: float = 0.0

    @classmethod
    def pop_from(cls, options: dict, cell) -> "Regularisation":
        """Take this module's options out of ``options`` (the rest are the cell's); ``cell`` is the
        cell's class, which says whether it has a cell state, a recurrent product and zoneout."""
        has_cell_state = cell.has_cell_state
        given = {k: options.pop(k) for k in OPTIONS if k in options}
        for key, p in given.items():
            high_ok = key.startswith("zoneout")  # p = 1 freezes the state; dropout p = 1 divides by 0
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 <= p <= 1 if high_ok else 0 <= p < 1):
                bound = "[0, 1]" if high_ok else "[0, 1)"
                raise ValueError(f"{key} must be a probability in {bound}, got {p!r}")
        zoneout = given.pop("zoneout", None)
        if zoneout is not None:
            if "zoneout_h" in given or "zoneout_c" in given:
                raise ValueError("give zoneout, or zoneout_h and zoneout_c, not both")
            given["zoneout_h"] = zoneout
            if has_cell_state:
                given["zoneout_c"] = zoneout
        zoned = sorted(k for k in ("zoneout", "zoneout_h", "zoneout_c") if given.get(k))
        if zoned and not cell.supports_zoneout:
            raise ValueError(f"zoneout keeps each state element on its own, which is not defined for cell "
                             f"{cell.name!r}; got {zoned[0]}={given[zoned[0]]!r}")
        recurrent = sorted(k for k in ("dropout_state", "weight_drop") if given.get(k))
        if recurrent and not cell.has_recurrent_product:
            raise ValueError(f"{recurrent[0]} acts on the recurrent weight, which cell {cell.name!r} does not have; "
                             f"got {recurrent[0]}={given[recurrent[0]]!r}")
        if given.get("zoneout_c") and not has_cell_state:
            raise ValueError(f"zoneout_c needs a cell state c, which this cell does not have; got zoneout_c={given['zoneout_c']!r}")
        return cls(**{k: float(v) for k, v in given.items()})

    def changed(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def active(self, training: bool) -> bool:
        """Whether a forward in this mode computes anything but the plain cell."""
        if self.zoneout_h or self.zoneout_c:
            return True
        return training and any(getattr(self, k) for k in DROPOUTS)


@dataclass
class Masks:
    """Every mask of one forward call; ``None`` where an option is off.

    ``layers[k * D + d]`` holds, for layer ``k`` and direction ``d``: ``weight`` ``(G*H, R)``
    (DropConnect on ``weight_hh``), ``state`` ``(B, R)`` (on ``h`` before the recurrent product)
    and ``zoneout``, one ``(T, B, size)`` keep mask per state element (``(T, 1, 1)`` in evaluation).
    ``input`` ``(B, I)``, ``between[k]`` and ``output`` ``(B, D*R)`` are shared by every step.
    """

    input: torch.Tensor | None = None
    layers: list = field(default_factory=list)
    between: list = field(default_factory=list)
    output: torch.Tensor | None = None

    def layer_params(self, idx: int, params: dict) -> dict:
        """The single-layer parameters as the engines should see them in this call."""
        if not self.layers:
            return params
        weight, state, _ = self.layers[idx]
        if weight is None and state is None:
            return params
        params = dict(params)
        if weight is not None:
            params["weight_hh"] = params["weight_hh"] * weight  # the gradient reaches the raw weight
        if state is not None:
            params["mask_hh"] = state  # read by Cell.project, not a parameter
        return params

    def keep(self, idx: int, n_state: int, valid=None):
        """The engines' keep masks: zoneout combined with the valid steps of a packed batch.

        ``valid`` ``(T, B, 1)`` is 1 on real steps; a padded step keeps the state whatever the
        zoneout mask says: ``keep = 1 - (1 - zoneout) * valid``.
        """
        zoneout = self.layers[idx][2] if self.layers else None
        if zoneout is None:
            return None if valid is None else tuple(1.0 - valid for _ in range(n_state))
        if valid is None:
            return zoneout
        return tuple(1.0 - valid if z is None else 1.0 - (1.0 - z) * valid for z in zoneout)


def _uniform(shape, like, generator):
    device = like.device if generator is None else generator.device
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return u if u.device == like.device else u.to(like.device)


def dropout_mask(shape, p, like, generator):
    """Keep with probability ``1 - p``, scaled by ``1 / (1 - p)``; in ``like``'s dtype and device."""
    return (_uniform(shape, like, generator) >= p).to(like.dtype) / (1.0 - p)


#: whether zoneout's masks come from the compiled hash where it runs (``zoneout_mask``);
#: benchmarks/compiled_ab.py's ``rand_zoneout`` variant turns it off
HASHED_ZONEOUT = True


def zoneout_mask(shape, p, like, generator):
    """1 (keep the previous value) with probability ``p``, in ``like``'s dtype and device.

    Where the compiled kernels run (a CPU tensor, a C++ compiler at hand: ``compiled.usable``; a
    bfloat16 mask is drawn in float32), element ``i`` is 1 where the counter-based hash of ``i`` and a seed
    drawn from ``generator`` is below ``p * 2^32`` (``csrc/dropout.cpp``'s hash, as ``dropout``'s
    mask): one vectorised pass split across threads, where ``torch.rand`` draws the
    ``(T, B, H)`` uniforms one at a time from its Mersenne Twister (the two masks of a call at
    ``T=64, B=32, H=512`` took 12-14 ms on a Zen 5, a quarter of the zoneout LSTM's no-grad forward at
    two threads; benchmarks/RESULTS.md). Elsewhere, and under a trace or a ``torch.func`` transform
    (``ops.eager``: ``vmap``'s randomness modes act on torch's draws), ``torch.rand``. The hash takes one draw of
    ``generator`` a mask, ``torch.rand`` one an element; a seed gives the same masks run after run
    on either path, and the two paths draw different ones."""
    dtype = like.dtype if like.dtype in compiled.DTYPES else torch.float32  # bfloat16: drawn in float32
    if HASHED_ZONEOUT and p < 1 and eager(like) and compiled.usable(like.new_empty(0, dtype=dtype)):
        seed = torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64, generator=generator,
                             device="cpu" if generator is None else generator.device)
        out = like.new_empty(shape, dtype=dtype)
        compiled.pointwise().hash_mask(out, int(seed.item()), dropout_threshold(p))
        return out.to(like.dtype)
    return (_uniform(shape, like, generator) < p).to(like.dtype)


def draw_masks(module, T: int, B: int, like) -> Masks:
    """The masks of one forward call of ``module`` over ``T`` steps and ``B`` rows.

    Draw order (fixed, so a seed reproduces a call): input; then per layer, per direction:
    weight, state, zoneout h, zoneout c; then the mask between that layer and the next; output.
    """
    reg: Regularisation = module.regularisation
    gen = module.generator
    training = module.training
    masks = Masks()
    if not reg.active(training):
        return masks
    R, D = module.state_sizes[0], module.num_directions
    sizes, zoneouts = module.state_sizes, (reg.zoneout_h, reg.zoneout_c)

    def drop(p, shape):
        return dropout_mask(shape, p, like, gen) if training and p else None

    masks.input = drop(reg.dropout_input, (B, module.input_size))
    for k in range(module.num_layers):
        for d in range(D):
            weight = None  # (a cell without a recurrent weight refuses weight_drop)
            if reg.weight_drop:
                weight = drop(reg.weight_drop, tuple(module.layer_params(k, d)["weight_hh"].shape))
            state = drop(reg.dropout_state, (B, R))
            zoneout = None
            if any(zoneouts[: len(sizes)]):
                zoneout = tuple(
                    None if not p
                    else zoneout_mask((T, B, size), p, like, gen) if training
                    else like.new_full((T, 1, 1), p)  # evaluation: the expectation
                    for p, size in zip(zoneouts, sizes)
                )
            masks.layers.append((weight, state, zoneout))
        if k < module.num_layers - 1:
            masks.between.append(drop(reg.dropout_between, (B, D * R)))
    masks.output = drop(reg.dropout_output, (B, D * R))
    return masks


def zoneout_step(reg: Regularisation, training: bool, generator, prev: tuple, new: tuple) -> tuple:
    """One step of zoneout for the single-step cell modules: ``keep * prev + (1 - keep) * new``,
    ``keep`` drawn per unit and row in training (h first, then c) and ``p`` in evaluation."""
    out = []
    for p, old, s in zip((reg.zoneout_h, reg.zoneout_c), prev, new):
        if p:
            keep = zoneout_mask(tuple(s.shape), p, s, generator) if training else s.new_full((), p)
            s = torch.lerp(s, old, keep)
        out.append(s)
    return tuple(out)


def embedding_dropout(embedding, tokens, p: float, training: bool, generator=None):
    """``embedding(tokens)`` with whole words dropped: each row of the vocabulary is zeroed with
    probability ``p`` for the whole call, at every position the word occurs, the rest scaled by
    ``1 / (1 - p)`` (Gal and Ghahramani 2016; Merity et al. 2018). Identity in evaluation.

    The mask is gathered per token rather than applied to the ``(V, E)`` weight: the same values
    and gradients without a copy of the table per call.
    """
    out = embedding(tokens)  # (..., E)
    if not training or not p:
        return out
    weight = embedding.weight
    mask = dropout_mask((weight.shape[0],), p, weight, generator)  # (V,)
    return out * mask[tokens].unsqueeze(-1).to(out.dtype)


def check_rate(p: float) -> None:
    """A dropout rate in [0, 1], or the ``ValueError`` ``torch.nn.Dropout`` raises for it."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def dropout_threshold(p: float) -> int:
    """The hash value from which an element is kept by ``dropout``'s kernel: ``p * 2^32``, rounded
    down (so the drop rate is ``p`` to within ``2^-32``)."""
    return min(int(p * 2.0 ** 32), 2 ** 32 - 1)


def hash_of_indices(n: int, seed: int) -> torch.Tensor:
    """``csrc/dropout.cpp``'s hash of the indices ``0 .. n-1`` (below 2^32) and ``seed``, in torch's
    int64 operations: ``mix(mix(i ^ seed_lo) ^ seed_hi)``, each value in [0, 2^32). The kernel's
    twin, bit for bit (tests/torch_engine/test_regularisation.py holds them to it); far slower than
    the kernel or ``torch.rand`` (benchmarks/zoneout_masks.py), so no path of the engine runs it."""
    m32 = 0xFFFFFFFF

    def mul32(x, c):  # x * c modulo 2^32, c in two 16-bit halves so that no product leaves int64
        return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & m32

    def mix32(x):  # the mixer: xor-shift, multiply, xor-shift, multiply, xor-shift
        x = x ^ (x >> 16)
        x = mul32(x, 0x7FEB352D)
        x = x ^ (x >> 15)
        x = mul32(x, 0x846CA68B)
        return x ^ (x >> 16)

    s = seed & ((1 << 64) - 1)
    return mix32(mix32(torch.arange(n, dtype=torch.int64) ^ (s & m32)) ^ (s >> 32))


class _HashDropout(torch.autograd.Function):
    """``x`` times the mask of ``seed`` (``csrc/dropout.cpp``); the backward applies the same mask,
    recomputed from the seed, to the gradient (and is itself differentiable)."""

    @staticmethod
    def forward(ctx, x, p, seed):
        ctx.p, ctx.seed = p, seed
        x = x.contiguous()
        out = torch.empty_like(x)
        compiled.prebuilt().dropout_apply(x, out, seed, dropout_threshold(p), 1.0 / (1.0 - p))
        return out

    @staticmethod
    def backward(ctx, grad):
        return _HashDropout.apply(grad, ctx.p, ctx.seed), None, None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)``, the same distribution: each element zeroed
    with probability ``p``, the rest scaled by ``1 / (1 - p)``; identity in evaluation.

    Where the compiled kernels run (a CPU tensor in float32 or float64) and are built already
    (``compiled.prebuilt``: this never waits for a build, which a time budget would pay for), the
    mask comes from a counter-based hash of the element's index and a seed drawn from torch's
    generator (``csrc/dropout.cpp``): one vectorised pass split across threads, and no mask kept
    for the backward. torch's CPU dropout draws a variate per element from its Mersenne Twister,
    one at a time, and on a character model's activations that was 5-13% of a training step
    (benchmarks/RESULTS.md, "Dropout in one pass"). Elsewhere (CUDA, bf16, no compiler) this is
    torch's dropout, as it is for ``p = 1`` and inside ``torch.compile`` or a trace (whose graphs
    take torch's dropout as an operation of their own) or a ``torch.func`` transform (whose
    ``vmap`` randomness modes act on torch's draws; ``ops.eager``). A seed (``torch.manual_seed``) gives the
    same masks run after run either way, but not the same masks on both paths.
    """
    check_rate(p)
    if not training or not p:
        return x
    if (p == 1 or x.device.type != "cpu" or x.dtype not in compiled.DTYPES or compiled.prebuilt() is None
            or not eager(x)):
        return torch.nn.functional.dropout(x, p, True)
    seed = int(torch.randint(-2 ** 63, 2 ** 63 - 1, (), dtype=torch.int64).item())
    return _HashDropout.apply(x, float(p), seed)


class Dropout(torch.nn.Module):
    """``torch.nn.Dropout(p)`` computed by ``dropout`` (the same distribution; no parameters, no
    state): what the language model applies to its embeddings and to its last layer's output."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_rate(p)
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
