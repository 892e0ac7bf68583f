"""``gatedrnn train``: a language model on the built-in corpus, a file, PTB, WikiText or enwik8.

With no arguments: a character LSTM on this Python's standard library source for 5 minutes,
then a sample. ``torchrun --standalone --nproc_per_node=N -m gatedrnn train ...`` runs it on N
processes (each its share of the batch rows).
"""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from ..cells import CELLS

#: what ``gatedrnn train`` trains when asked nothing: chosen to pass 2 bits per character within
#: 5 minutes on 2 CPU cores (see README)
DEFAULTS = {
    "cell": "lstm", "hidden_size": 256, "num_layers": 1, "embed_size": 0, "dropout": 0.0, "tie_weights": False,
    "engine": "auto", "embedding_dropout": 0.0,
    "data": "", "level": "", "seq_len": 64, "batch_size": 32, "lr": 5e-3, "optimizer": "adamw",
    "weight_decay": 0.0, "momentum": 0.0, "beta1": 0.9, "beta2": 0.99, "schedule": "cosine", "warmup": 30, "clip": 1.0, "seed": 0,
    "device": "auto", "save_every": 500, "eval_every": 250, "eval_streams": 16, "log_every": 50,
    "on_nan": "stop", "precision": "float32",
}
DEFAULT_MINUTES = 5.0
MODEL_KEYS = ("cell", "hidden_size", "num_layers", "embed_size", "dropout", "tie_weights", "engine",
              "embedding_dropout", "sum_layer_outputs")
#: cell and module options as flags: name -> (type, help)
CELL_OPTIONS = {
    "forget_bias": (float, "constant added to the forget gate (TensorFlow's forget_bias)"),
    "forget_bias_init": (float, "initial value of the forget gate's bias"),
    "proj_size": (int, "LSTM projection size (h is projected to this size)"),
    "layer_norm": ("flag", "layer-normalised gates and cell"),
    "rounds": (int, "Mogrifier rounds"),
    "rank": (int, "Mogrifier factor rank"),
    "nonlinearity": (str, "rnn: tanh or relu"),
    "drop_gates": (str, "LSTM ablation: gates fixed at 1, e.g. i,o"),
    "input_activation": (str, "LSTM ablation: tanh or identity"),
    "output_activation": (str, "LSTM ablation: tanh or identity"),
    "zoneout": (float, "zoneout rate on the recurrent state"),
    "weight_drop": (float, "DropConnect rate on the recurrent weights"),
    "dropout_input": (float, "variational dropout of the recurrent input, one mask per sequence"),
    "dropout_between": (float, "variational dropout between layers, one mask per sequence"),
    "dropout_output": (float, "variational dropout of the recurrent output, one mask per sequence"),
    "dropout_state": (float, "variational dropout of h before the recurrent product, one mask per sequence"),
}


def add_arguments(p):
    d = DEFAULTS
    p.add_argument("--recipe", metavar="NAME", help="a named set of settings (gatedrnn/recipes/NAME.toml, e.g. "
                   "mogrifier-char); flags given here override it")
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="text file (split 90/5/5) or folder: PTB, WikiText, "
                   "train/valid/test.txt, enwik8 (default: this Python's standard library source)")
    g.add_argument("--level", choices=("char", "word", "byte"),
                   help="tokens (default: word for PTB/WikiText, byte for enwik8, char otherwise)")
    g = p.add_argument_group("model")
    g.add_argument("--cell", help=f"one of {', '.join(CELLS)} (default {d['cell']})")
    g.add_argument("--hidden-size", type=int, help=f"default {d['hidden_size']}")
    g.add_argument("--num-layers", type=int, help=f"default {d['num_layers']}")
    g.add_argument("--embed-size", type=int, help="default: the recurrent output size")
    g.add_argument("--dropout", type=float, help="on embeddings, between layers, before the decoder (default 0)")
    g.add_argument("--tie-weights", action="store_true", default=None, help="share embedding and decoder weights")
    g.add_argument("--embedding-dropout", type=float, help="drop whole words of the embedding (default 0)")
    g.add_argument("--engine", choices=("auto", "fused", "reference"), help="recurrent kernels (default auto)")
    g.add_argument("--sum-layer-outputs", action="store_true", default=None,
                   help="the decoder reads the sum of every layer's output (the Mogrifier paper's setup)")
    for name, (kind, help_text) in CELL_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if kind == "flag":
            g.add_argument(flag, action="store_true", default=None, help=help_text)
        else:
            g.add_argument(flag, type=kind, help=help_text)
    g = p.add_argument_group("training")
    g.add_argument("--seq-len", type=int, help=f"BPTT window (default {d['seq_len']})")
    g.add_argument("--batch-size", type=int, help=f"parallel streams, across all processes (default {d['batch_size']})")
    g.add_argument("--steps", type=int, help="total optimizer steps (default: no limit, the clock decides)")
    g.add_argument("--minutes", type=float, help=f"total wall-clock budget (default {DEFAULT_MINUTES:g} without --steps)")
    g.add_argument("--lr", type=float, help=f"peak learning rate (default {d['lr']:g})")
    g.add_argument("--optimizer", choices=("adamw", "sgd"), help="default adamw")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--momentum", type=float, help="SGD momentum")
    g.add_argument("--beta1", type=float, help=f"Adam's first-moment decay (default {d['beta1']:g})")
    g.add_argument("--beta2", type=float, help=f"Adam's second-moment decay (default {d['beta2']:g})")
    g.add_argument("--schedule", choices=("cosine", "constant"), help="after warm-up (default cosine)")
    g.add_argument("--warmup", type=int, help=f"warm-up steps (default {d['warmup']})")
    g.add_argument("--clip", type=float, help=f"gradient norm clip, 0 for none (default {d['clip']:g})")
    g.add_argument("--seed", type=int)
    g.add_argument("--precision", choices=("float32", "bf16"),
                   help="bf16: the forward under bf16 autocast, weights and gradients float32 (default float32)")
    g.add_argument("--on-nan", choices=("stop", "skip"),
                   help="a non-finite loss or gradient stops the run (default, the last checkpoint kept) "
                        "or skips the step")
    g.add_argument("--device", help="cpu, cuda, cuda:N or auto (default)")
    g.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: on a machine shared with other jobs, more threads thrash)")
    g = p.add_argument_group("run")
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/<date-time>); never overwritten")
    g.add_argument("--resume", nargs="?", const=True, metavar="RUN", help="continue the run in RUN (or --out)")
    g.add_argument("--save-every", type=int, help=f"steps between checkpoints (default {d['save_every']})")
    g.add_argument("--eval-every", type=int, help=f"steps between validations (default {d['eval_every']})")
    g.add_argument("--eval-streams", type=int, help=f"validation streams (default {d['eval_streams']}; 1 is exact)")
    g.add_argument("--log-every", type=int, help=f"steps between progress lines (default {d['log_every']})")
    g.add_argument("--sample-length", type=int, default=400, help="tokens sampled at the end (0: none)")


def explicit(args) -> tuple[dict, dict, dict]:
    """The settings the user gave: (training, model, cell options), without the defaults."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    train = {k: given[k] for k in DEFAULTS if k in given and k not in MODEL_KEYS}
    for k in ("steps", "minutes"):
        if k in given:
            train[k] = given[k]
    model = {k: given[k] for k in MODEL_KEYS if k in given}
    cell = {k: given[k] for k in CELL_OPTIONS if k in given}
    return train, model, cell


def apply_recipe(args) -> None:
    """Fill the settings the user left unset from ``--recipe`` (a flag given always wins)."""
    name = getattr(args, "recipe", None)
    if not name:
        return
    from . import UsageError
    from ..training.recipes import check_keys, load_recipe

    if args.resume:
        raise UsageError("--recipe starts a new run; a resumed run keeps its own settings (drop --recipe)")
    recipe = load_recipe(name)
    check_keys(recipe, set(DEFAULTS) | set(MODEL_KEYS) | set(CELL_OPTIONS) | {"steps", "minutes"})
    for key, value in recipe.settings.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def run(args) -> int:
    from . import UsageError
    from ..training import Trainer, TrainConfig
    from ..training import distributed as D

    apply_recipe(args)
    train_given, model_given, cell_given = explicit(args)
    for name in ("hidden_size", "num_layers", "seq_len", "batch_size", "save_every", "eval_every", "log_every",
                 "eval_streams"):
        value = {**train_given, **model_given}.get(name)
        if value is not None and value <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("steps", "minutes"):
        if train_given.get(name) is not None and train_given[name] <= 0:
            raise UsageError(f"--{name} must be positive, got {train_given[name]}")
    if args.sample_length < 0:
        raise UsageError(f"--sample-length must not be negative, got {args.sample_length}")

    if args.threads <= 0:
        raise UsageError(f"--threads must be a positive integer, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    info, device = D.setup(train_given.get("device", "auto"))
    say = print if info.is_writer else (lambda *a, **k: None)
    try:
        if args.resume:
            if args.resume is not True and args.out and Path(args.resume) != Path(args.out):
                raise UsageError(f"--resume {args.resume} and --out {args.out} name two runs; give one")
            out = Path(args.out if args.resume is True else args.resume) if (args.resume is not True or args.out) else None
            if out is None:
                raise UsageError("--resume needs the run: --resume RUN, or --out RUN --resume")
            trainer = Trainer.resume(out, train_given, {**model_given, "cell_options": cell_given},
                                     callback=Printer(say), info=info, device=device)
        else:
            out = Path(args.out) if args.out else D.broadcast_object(default_out(), info)
            settings = {**DEFAULTS, **train_given}
            if "steps" not in train_given and "minutes" not in train_given:
                settings["minutes"] = DEFAULT_MINUTES
            cfg = TrainConfig.from_dict({k: v for k, v in settings.items() if k not in MODEL_KEYS})
            model = {k: v for k, v in DEFAULTS.items() if k in MODEL_KEYS}
            model.update(model_given)
            model["cell_options"] = cell_given
            trainer = Trainer.new(cfg, model, out, callback=Printer(say), info=info, device=device)
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def stop_now(signum, frame):  # a second signal: out of the step at once, nothing saved
            raise KeyboardInterrupt

        def stop(signum, frame):
            # not the previous handlers: a process started with SIGINT ignored (a background job)
            # would ignore the second one too
            for s in previous:
                signal.signal(s, stop_now)
            say(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                "(again to stop at once)", flush=True)
            trainer.request_stop()

        for s in previous:
            signal.signal(s, stop)
        try:
            result = trainer.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if info.is_writer and (trainer.out / "metrics.csv").exists():
            from ..experiments.plots import plot_metrics

            if plot_metrics(trainer.out / "metrics.csv", trainer.out / "loss.png"):
                say(f"loss curve: {trainer.out / 'loss.png'}")
        if info.is_writer and args.sample_length and result["reason"] != "interrupted":
            from ..training import generate

            say(f"sample ({args.sample_length} {trainer.vocab.level} tokens, temperature 0.8):")
            for text in generate(trainer.model, trainer.vocab, "", args.sample_length, temperature=0.8, seed=0,
                                 device=trainer.device):
                sys.stdout.write(text)
                sys.stdout.flush()
            say()
        if result["reason"] == "interrupted":
            say(f"interrupted at step {result['step']}; resume with: gatedrnn train --resume {trainer.out}")
            return 130
        return 0
    finally:
        D.teardown()


def default_out() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def clock(seconds) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Printer:
    """Progress lines for the trainer's events."""

    def __init__(self, say):
        self.say = say
        self.unit = "bits/token"
        self.level = "char"

    def per_token(self, data) -> str:
        if self.level == "word":
            return f"ppl {min(data['ppl'] if 'ppl' in data else 2 ** data['bits_per_token'], 1e9):8.2f}"
        return f"{data['bits_per_token']:.3f} {self.unit}"

    def __call__(self, event):
        say, d = self.say, event.data
        if event.kind == "start":
            self.level = d["train"]["level"] or d["corpus"].split(" at ")[1].split()[0]
            self.unit = {"char": "bpc", "byte": "bpb"}.get(self.level, "bits/token")
            m, t = d["model"], d["train"]
            opts = ", ".join(f"{k}={v}" for k, v in m["cell_options"].items())
            verb = f"resuming at step {event.step}" if d["resumed"] else "training"
            say(f"{verb}: {m['cell']}{f' ({opts})' if opts else ''}, hidden {m['hidden_size']} x {m['num_layers']} "
                f"layer(s), {d['params']:,} parameters, on {d['device']}"
                + (f" x {d['world_size']} processes" if d["world_size"] > 1 else ""))
            say(f"data: {d['corpus']}")
            budget = " and ".join(filter(None, [f"{t['steps']} steps" if t["steps"] else "",
                                               f"{t['minutes']:g} minutes" if t["minutes"] else ""])) or "no limit"
            say(f"batch {t['batch_size']} x {t['seq_len']} tokens, {t['optimizer']} lr {t['lr']:g} ({t['schedule']}), "
                f"budget {budget}; run folder {d['out']}", flush=True)
        elif event.kind == "log":
            steps = f"/{d['steps']}" if d["steps"] else ""
            say(f"step {event.step:>6}{steps} | loss {d['loss']:.4f} | {self.per_token(d)} | "
                f"{d['tokens_per_s'] / 1000:.1f}k tok/s | lr {d['lr']:.2e} | {clock(d['elapsed'])} | "
                f"ETA {clock(d['eta'])}", flush=True)
        elif event.kind == "skip":
            say(f"step {event.step:>6} | {d['reason']}: step skipped (--on-nan skip)", flush=True)
        elif event.kind == "valid":
            mark = " (best)" if d["best"] else ""
            say(f"valid step {event.step:>6} | loss {d['loss']:.4f} | {self.per_token(d)}{mark}", flush=True)
        elif event.kind == "end":
            why = {"steps": "step budget", "minutes": "time budget", "interrupted": "interrupted",
                   "paused": "paused"}.get(d["reason"], d["reason"])
            v = d["valid"]
            valid = ""
            if v:
                best = {"loss": d["best_valid_loss"], "bits_per_token": d["best_valid_loss"] / 0.6931471805599453}
                valid = f"; valid {self.per_token(v)} (best {self.per_token(best)})"
            say(f"done: {event.step} steps, {d['tokens']:,} tokens in {clock(d['elapsed'])} ({why}){valid}")
