"""Flags built from the config dataclasses, and the parsing of option strings, at the command line's
boundary: the dataclasses hold every default and its help (``field.metadata``), and no layer below
this one sees a command-line string.
"""
from __future__ import annotations

import argparse
import difflib
import re
from dataclasses import MISSING, fields

#: cell and module options as flags, shared by ``train`` and ``compare``: name -> (type, help); the
#: defaults are the cells' own (``CELLS[name].options``), so the help names none
CELL_OPTIONS = {
    "forget_bias": (float, "constant added to the forget gate (TensorFlow's forget_bias)"),
    "forget_bias_init": (float, "initial value of the forget gate's bias"),
    "proj_size": (int, "LSTM projection size (h is projected to this size)"),
    "layer_norm": (bool, "layer-normalised gates and cell"),
    "rounds": (int, "Mogrifier rounds"),
    "rank": (int, "Mogrifier factor rank"),
    "nonlinearity": (str, "rnn: tanh or relu; indrnn: relu or tanh"),
    "num_heads": (int, "sLSTM heads (block-diagonal recurrent matrix); must divide the hidden size"),
    "drop_gates": ("gates", "LSTM ablation: gates fixed at 1, e.g. i,o"),
    "input_activation": (str, "LSTM ablation: tanh or identity"),
    "output_activation": (str, "LSTM ablation: tanh or identity"),
    "zoneout": (float, "zoneout rate on the recurrent state (c too for the LSTM family)"),
    "weight_drop": (float, "DropConnect rate on the recurrent weights"),
    "dropout_input": (float, "variational dropout of the recurrent input, one mask per sequence"),
    "dropout_between": (float, "variational dropout between layers, one mask per sequence"),
    "dropout_output": (float, "variational dropout of the recurrent output, one mask per sequence"),
    "dropout_state": (float, "variational dropout of h before the recurrent product, one mask per sequence"),
}


#: CPU threads of every command that computes (one place to change it)
DEFAULT_THREADS = 1


def add_threads_flag(p, chosen: bool = False) -> None:
    """``--threads``; with ``chosen`` (``gatedrnn train``) its default is chosen by timing."""
    if chosen:
        p.add_argument("--threads", type=int, default=None,
                       help="CPU threads (default with a time budget: 1 or all cores, whichever trains faster, timed "
                            f"on the run's own steps every minute; with --steps: {DEFAULT_THREADS})")
        return
    p.add_argument("--threads", type=int, default=None,
                   help=f"CPU threads (default {DEFAULT_THREADS}: on a machine shared with other jobs, more threads "
                        f"thrash)")


def use_threads(args) -> None:
    """``torch.set_num_threads`` from ``--threads``; a bad count is a usage error."""
    from . import UsageError

    threads = DEFAULT_THREADS if args.threads is None else args.threads
    if threads <= 0:
        raise UsageError(f"--threads must be a positive integer, got {threads}")
    import torch

    torch.set_num_threads(threads)


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def gate_list(text) -> tuple[str, ...]:
    """``"i,o"`` or ``"i o"`` (a flag or a recipe) -> ``("i", "o")``; a list from a recipe passes."""
    if isinstance(text, str):
        return tuple(g for g in text.replace(",", " ").split() if g)
    return tuple(text)


#: how an option's value given as text becomes the value the library takes
PARSERS = {"gates": gate_list}


def describe_default(f) -> str:
    text = f.metadata.get("default_text")
    if text is not None:
        return f": {text}"
    value = f.default
    if isinstance(value, bool):
        return " on" if value else " off"
    if isinstance(value, float):
        return f" {value:g}"
    return f" {value}"


def add_config_flags(groups: dict, cls, skip=()) -> list[str]:
    """A flag per field of ``cls`` that carries help (``--seq-len`` for ``seq_len``), in the group
    its metadata names. The flags default to ``None`` (not given): what is not given comes from a
    recipe, else from the dataclass, whose default the help shows. Returns the field names."""
    names = []
    for f in fields(cls):
        meta = f.metadata
        if "help" not in meta or f.name in skip:
            continue
        kind = meta.get("type") or type(f.default if f.default is not MISSING else "")
        kwargs = {"default": None, "help": f"{meta['help']} (default{describe_default(f)})"}
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = kind
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
        groups[meta["group"]].add_argument(flag_name(f.name), **kwargs)
        names.append(f.name)
    return names


def add_cell_option_flags(group, options=CELL_OPTIONS) -> None:
    for name, (kind, help_text) in options.items():
        if kind is bool:
            group.add_argument(flag_name(name), action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag_name(name), type=str if kind in PARSERS else kind, default=None, help=help_text)


def cell_options(args, options=CELL_OPTIONS) -> dict:
    """The cell options given on the command line (or set by a recipe), parsed."""
    out = {}
    for name, (kind, _) in options.items():
        value = getattr(args, name, None)
        if value is not None:
            out[name] = PARSERS[kind](value) if kind in PARSERS else value
    return out


# -- suggestions for a mistyped flag or value ----------------------------------------------------
def close_to(word: str, candidates) -> list[str]:
    """Candidates close to ``word``, a different case first (``LSTM`` -> ``lstm``)."""
    candidates = list(candidates)
    same = [c for c in candidates if c.lower() == word.lower() and c != word]
    return same or difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)


def suggestion(parser: argparse.ArgumentParser, message: str) -> str:
    """'; did you mean --seq-len?' for argparse's messages about unknown flags and bad choices."""
    hits = []
    m = re.match(r"unrecognized arguments: (.*)", message)
    if m:
        flags = [o for o in parser._option_string_actions if o.startswith("--")]
        for word in m.group(1).split():
            if word.startswith("-"):
                hits += close_to(word.split("=")[0], flags)
    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if m:
        hits += close_to(m.group(1), re.findall(r"'([^']*)'", m.group(2)))
    return f"; did you mean {' or '.join(hits)}?" if hits else ""
