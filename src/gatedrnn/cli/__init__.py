"""``gatedrnn <command>``: thin wrappers that parse arguments, call the library and print.

Each command is a module with ``add_arguments(parser)`` and ``run(args) -> int``, listed in
``COMMANDS``. Errors a user can cause (``UsageError``, ``ValueError`` from validation at the
boundary) print one line and exit with code 2, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

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


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line like every other refusal (exit code 2): the usage
    of ``gatedrnn train`` runs to a screenful and buried the error under it."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="gatedrnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return importlib.import_module(args._module).run(args)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"gatedrnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gatedrnn {args.command}: interrupted", file=sys.stderr)
        return 130
