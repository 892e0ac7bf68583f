"""Validation at the modules' boundary: ``torch.nn``'s exception for each mistake, in its words.

Every message starts with the text ``torch.nn`` raises for the same mistake (so code that matches
on it, ``pytest.raises(RuntimeError, match="input.size(-1) must be equal to input_size")``, keeps
working) and goes on with what gatedrnn expected and what it found. Where ``torch.nn`` is not
consistent about the type (a wrong input size is a ``RuntimeError``, a wrong input rank a
``ValueError``), ``InputError`` is both.
"""
from __future__ import annotations

import numbers

import torch

from .ops import autocast_of

#: the names of a state's parts, as ``torch.nn`` documents them (``h_0``, ``c_0``); a cell whose
#: state has more parts names them with a ``state_names`` attribute
STATE_NAMES = ("h", "c")


class InputError(ValueError, RuntimeError):
    """Bad input to a module: says what was expected and what came. A ``RuntimeError`` too,
    which is what ``torch.nn``'s recurrent modules raise for most of the same mistakes."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong kind (a tensor where a tuple of tensors was due, ...)."""


def state_names(cell) -> tuple[str, ...]:
    """The names of the parts of ``cell``'s state: ``("h",)``, ``("h", "c")`` or the cell's own."""
    n = len(cell.state_sizes(1))
    names = getattr(cell, "state_names", None) or STATE_NAMES
    if len(names) < n:
        names = tuple(names) + tuple(f"s{k}" for k in range(len(names), n))
    return tuple(names[:n])


# -- constructor arguments ------------------------------------------------------------------
def check_flag(name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__} ({value!r}: expected True or False)")


def check_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__} ({value!r})")


def check_sequence_sizes(input_size, hidden_size, num_layers) -> None:
    """``torch.nn.RNNBase``'s checks: integers, all greater than zero."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
        check_int(name, value)
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero, got {name}={value}")


def check_cell_sizes(input_size, hidden_size) -> None:
    """``torch.nn``'s cells take zero sizes (empty weights, empty states); negative sizes fail
    there in ``torch.empty`` with a ``RuntimeError``, here with ``InputError`` saying which."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        check_int(name, value)
        if value < 0:
            raise InputError(f"Trying to create tensor with negative dimension: {name} must be "
                             f"zero or more, got {name}={value}")


def check_dropout(dropout) -> None:
    if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                         f"element being zeroed, got dropout={dropout!r}")


def check_proj_size(proj_size, hidden_size) -> None:
    check_int("proj_size", proj_size)
    if proj_size < 0:
        raise ValueError(f"proj_size should be a positive integer or zero to disable projections, got {proj_size}")
    if proj_size >= hidden_size:
        raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} "
                         f"and hidden_size={hidden_size}")


# -- forward arguments ----------------------------------------------------------------------
def check_input(name: str, x, dims: tuple[int, ...], input_size: int, weight, what: str = "input") -> None:
    """Rank, dtype, feature size and device of an input tensor, in ``torch.nn``'s order."""
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"{name}: {what} must be a tensor or PackedSequence, got {type(x).__name__}")
    if x.dim() not in dims:
        expected = " or ".join(f"{d}D" for d in dims)
        noun = " tensor" if name == "RNN" else ""  # torch.nn.RNN's wording differs from LSTM's and GRU's
        raise InputError(f"{name}: Expected {what} to be {expected}, got {x.dim()}D{noun} instead "
                         f"(a tensor of shape {tuple(x.shape)})")
    check_like_params(name, what, x, weight)
    if x.shape[-1] != input_size:
        if len(dims) == 2 and dims[0] == 1:  # the cells' wording
            raise InputError(f"input has inconsistent input_size: got {x.shape[-1]} expected {input_size} "
                             f"({name}: {what} of shape {tuple(x.shape)})")
        raise InputError(f"input.size(-1) must be equal to input_size. Expected {input_size}, got {x.shape[-1]} "
                         f"({name}: {what} of shape {tuple(x.shape)})")


def check_like_params(name: str, what: str, x, weight) -> None:
    """Refuse an input whose dtype or device differs from the parameters' (autocast aside)."""
    if not x.is_floating_point() or (x.dtype != weight.dtype and autocast_of(x) is None):
        detail = "" if x.is_floating_point() else f"; {what} must be floating point"
        raise InputError(f"RNN input dtype ({x.dtype}) does not match weight dtype ({weight.dtype}). Convert "
                         f"input: input.to({weight.dtype}), or convert model: model.to({x.dtype}) ({name}{detail})")
    if x.device != weight.device:
        raise InputError(f"Input and parameter tensors are not at the same device, found input tensor at "
                         f"{x.device} and parameter tensor at {weight.device} ({name}: {what})")


def state_parts(name: str, hx, names: tuple[str, ...]) -> tuple:
    """``hx`` as a tuple of its parts: one tensor for a one-part state, else a tuple of them."""
    n = len(names)
    if n == 1:
        if not isinstance(hx, torch.Tensor):
            got = f"a tuple of {len(hx)}" if isinstance(hx, (tuple, list)) else type(hx).__name__
            raise InputTypeError(f"{name} expects hx as one tensor {names[0]}, got {got}")
        return (hx,)
    if not isinstance(hx, (tuple, list)):
        got = f"a tensor of shape {tuple(hx.shape)}" if isinstance(hx, torch.Tensor) else type(hx).__name__
        raise InputTypeError(f"{name} expects hx as a tuple ({', '.join(names)}), got {got}")
    if len(hx) != n:
        words = {2: "two", 3: "three", 4: "four"}
        raise InputError(f"{name.lower()} expects {words.get(n, n)} hidden states: hx as a tuple "
                         f"({', '.join(names)}), got a tuple of {len(hx)}")
    for part, sname in zip(hx, names):
        if not isinstance(part, torch.Tensor):
            raise InputTypeError(f"{name}: {sname} must be a tensor, got {type(part).__name__}")
    return tuple(hx)


def check_state_like_input(name: str, sname: str, s, x) -> None:
    if s.dtype != x.dtype or s.device != x.device:
        raise InputError(f"{name}: {sname} is {s.dtype} on {s.device}, expected the input's {x.dtype} on {x.device}")


def sequence_state(name: str, hx, names: tuple[str, ...], shapes: list[tuple], x, batched: bool) -> tuple:
    """A sequence module's ``hx`` validated as ``torch.nn`` does: each part ``(L*D, B, size)``
    (``(L*D, size)`` unbatched), returned batched, as a tuple of tensors."""
    parts = state_parts(name, hx, tuple(f"{n}_0" for n in names))
    dim = 3 if batched else 2
    if any(s.dim() != dim for s in parts):
        kind = "batched 3-D" if batched else "unbatched 2-D"
        torch_names = " and ".join(("hx", "cx")) if len(parts) == 2 else "hx"
        dims = ", ".join(f"{s.dim()}-D" for s in parts)
        got = f"({dims}) tensors" if len(parts) > 1 else f"{dims} tensor"
        raise InputError(f"For {kind} input, {torch_names} should also be {dim}-D but got {got} "
                         f"({name}: {', '.join(f'{n}_0' for n in names)} of shapes "
                         f"{', '.join(str(tuple(s.shape)) for s in parts)})")
    out = []
    for k, (s, sname, shape) in enumerate(zip(parts, names, shapes)):
        s = s if batched else s.unsqueeze(1)
        if tuple(s.shape) != tuple(shape):
            which = f"hidden[{k}]" if len(parts) > 1 else "hidden"
            expected = shape if batched else (shape[0], shape[2])
            got = tuple(s.shape) if batched else (s.shape[0], s.shape[2])
            raise InputError(f"Expected {which} size {tuple(shape)}, got {list(s.shape)} ({name}: expected "
                             f"{sname}_0 of shape {expected} (num_layers * num_directions, "
                             f"{'batch, ' if batched else ''}{'hidden_size' if k else 'output size'}), got {got})")
        check_state_like_input(name, f"{sname}_0", s, x)
        out.append(s)
    return tuple(out)


def cell_state(name: str, hx, names: tuple[str, ...], sizes: tuple[int, ...], x, batched: bool) -> tuple:
    """A cell's ``hx`` validated as ``torch.nn``'s cells do: each part ``(B, size)`` (``(size,)``
    unbatched), returned batched, as a tuple of tensors."""
    parts = state_parts(name, hx, names)
    B = x.shape[0]
    out = []
    for k, (s, sname, size) in enumerate(zip(parts, names, sizes)):
        if s.dim() not in (1, 2):
            which = f"hx[{k}]" if len(parts) > 1 else "hidden"
            raise InputError(f"{name}: Expected {which} to be 1D or 2D, got {s.dim()}D instead "
                             f"({sname} of shape {tuple(s.shape)})")
        expected = (B, size) if batched else (size,)
        if s.dim() != len(expected):
            kind = "batched 2-D" if batched else "unbatched 1-D"
            raise InputError(f"{name}: for {kind} input, expected {sname} of shape {expected}, "
                             f"got {tuple(s.shape)}")
        s = s if batched else s.unsqueeze(0)
        if s.shape[1] != size:
            raise InputError(f"hidden{k} has inconsistent hidden_size: got {s.shape[1]}, expected {size} "
                             f"({name}: expected {sname} of shape {expected}, got {tuple(s.shape[int(not batched):])})")
        if s.shape[0] != B:
            raise InputError(f"Input batch size {B} doesn't match hidden{k} batch size {s.shape[0]} "
                             f"({name}: expected {sname} of shape {expected}, got {tuple(s.shape)})")
        check_state_like_input(name, sname, s, x)
        out.append(s)
    return tuple(out)
