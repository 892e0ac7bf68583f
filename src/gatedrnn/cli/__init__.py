"""``gatedrnn <command>``: thin wrappers that parse arguments, call the library and print.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
``COMMANDS``. Errors a user can cause (``UsageError``, ``ValueError`` from validation at the
boundary) print one line and exit with code 2, without a traceback; a failed write or read (a full
disk, a read-only mount: ``OSError``) prints one line and exits with code 1; a closed stdout ends
a command quietly with code 141, except ``train``, which keeps training (see ``cli/train.py``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

#: command name -> (module, one-line help)
COMMANDS = {
    "train": ("gatedrnn.cli.train", "train a language model (default: characters of this Python's standard library)"),
    "sample": ("gatedrnn.cli.sample", "stream text from a trained language model"),
    "eval": ("gatedrnn.cli.eval", "loss, perplexity and bits per token of a trained language model"),
    "gradcheck": ("gatedrnn.cli.gradcheck", "check the hand-derived backward against finite differences"),
    "compare": ("gatedrnn.cli.compare", "train cells side by side on a long-range task over seeds; table, CSV, curves"),
    "gradflow": ("gatedrnn.cli.gradflow", "gradient norm of a last-step loss with respect to each earlier hidden state"),
    "inspect": ("gatedrnn.cli.inspect", "HTML page of a language model's cell activations over a text"),
    "export": ("gatedrnn.cli.export", "a trained language model as an ONNX graph (logits and state), for onnxruntime"),
    "bench": ("gatedrnn.cli.bench", "time and memory of each engine against torch.nn's kernels, interleaved"),
}


DESCRIPTION = ("The LSTM family of recurrent networks: train a language model, sample from it and evaluate it, "
               "compare cells, check gradients, export to ONNX, benchmark the engines.")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line like every other refusal (exit code 2), naming the
    command and suggesting the closest flag or value: the usage of ``gatedrnn train`` runs to a
    screenful and buried the error under it."""

    def error(self, message):
        from .flags import suggestion

        self.exit(2, f"{self.prog}: error: {message}{suggestion(self, message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = OneLineParser(prog="gatedrnn", description=DESCRIPTION,
                           epilog="gatedrnn COMMAND --help describes a command's flags.")
    parser.add_argument("--version", action="version", version=f"gatedrnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser,
                                title="commands")
    parser.commands = {}
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
        parser.commands[name] = p
    return parser


def wait_policy(argv) -> str | None:
    """OpenMP's wait policy for a command line: ``PASSIVE`` (threads sleep while they wait), or
    ``None`` for OpenMP's default (they spin a while first).

    Threads that spin made two threads 8-25x slower than one on cores other jobs kept busy, and
    sleeping ones did not; but on an idle machine sleeping waits cost 12% of two threads'
    speed (benchmarks/RESULTS.md, "Threads and the first hour" and "OpenMP's wait policy"). A
    training run whose thread count is chosen by timing (``gatedrnn train`` without ``--threads``)
    drops to one thread when another job takes a core (``training/threads.py``), so it keeps the
    default; so does ``bench``, which measures what the engines cost in a program of one's own,
    where OpenMP's default governs. Every other command sleeps.
    """
    sniff = argparse.ArgumentParser(add_help=False)  # the real parser imports torch: too late
    sniff.add_argument("--threads")
    known, _ = sniff.parse_known_args(list(argv[1:]))
    command = argv[0] if argv else None
    if command == "bench" or (command == "train" and known.threads is None):
        return None
    return "PASSIVE"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # OpenMP reads the policy when it starts: set before torch is imported; the user's value is kept
    policy = wait_policy(argv)
    if policy:
        os.environ.setdefault("OMP_WAIT_POLICY", policy)
    parser = build_parser()
    if not argv:  # a bare ``gatedrnn``: what it can do, as a usage error (exit code 2, like argparse)
        parser.print_help(sys.stderr)
        return 2
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's own parser names itself and knows its flags
        parser.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, *rest, **kwargs):
            # a note the library gives as a warning (a checkpoint fallback) is one line
            if getattr(category, "one_line", False):
                _say_error(f"gatedrnn {args.command}: note: {message}")
            else:
                shown(message, category, *rest, **kwargs)

        warnings.showwarning = show
        from ..training.loading import CheckpointFallback

        warnings.filterwarnings("always", category=CheckpointFallback)  # a note, whatever the filters say
        return _run(args)


def _run(args) -> int:
    try:
        return importlib.import_module(args._module).run(args)
    except (UsageError, ValueError, FileNotFoundError) as err:
        _say_error(f"gatedrnn {args.command}: error: {err}")
        return 2
    except BrokenPipeError:
        # the reader of stdout went away (`gatedrnn sample RUN | head`): nothing more to do
        # (`train` keeps training instead, see cli/train.py)
        silence_stdout()
        return 141
    except OSError as err:
        # the machine refused a write or a read (a full disk, a read-only mount, no permission):
        # one line; run folders say themselves what they still hold
        what = str(err) if not err.strerror else (f"{err.strerror}: {err.filename}" if err.filename else err.strerror)
        _say_error(f"gatedrnn {args.command}: error: {what}")
        return 1
    except KeyboardInterrupt:
        _say_error(f"gatedrnn {args.command}: interrupted")
        return 130


def _say_error(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr is gone too: the exit status still tells
        pass


def silence_stdout() -> None:
    """Point stdout at the null device: what is still buffered, and the interpreter's last flush
    at exit, go nowhere instead of raising again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass
