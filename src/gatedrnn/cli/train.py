"""``gatedrnn train``: a language model on the built-in corpus, a file, PTB, WikiText or enwik8.

With no arguments: a character LSTM on this Python's standard library source for 5 minutes,
then a sample. ``torchrun --standalone --nproc_per_node=N -m gatedrnn train ...`` runs it on N
processes (each its share of the batch rows).
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def add_arguments(p):
    from ..models.lm import LMConfig
    from ..training.config import TrainConfig
    from .flags import add_cell_option_flags, add_config_flags, add_threads_flag

    p.add_argument("--recipe", metavar="NAME", help="a named set of settings (gatedrnn/recipes/NAME.toml, e.g. "
                   "mogrifier-char); flags given here override it, whatever their value")
    groups = {name: p.add_argument_group(name) for name in ("data", "model", "training", "run")}
    add_config_flags(groups, LMConfig)
    add_cell_option_flags(groups["model"])
    add_config_flags(groups, TrainConfig)
    add_threads_flag(groups["training"], chosen=True)
    g = groups["run"]
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/<date-time>); never overwritten")
    g.add_argument("--resume", nargs="?", const=True, metavar="RUN", help="continue the run in RUN (or --out)")
    g.add_argument("--skip-memory-check", action="store_true",
                   help="build the model even if its size and a step's memory exceed the memory available")
    g.add_argument("--allow-unverified", action="store_true",
                   help="--resume from a checkpoint that carries no SHA-256 digest (only one you trust)")


def setting_names() -> tuple[set, set]:
    """(training settings, model settings): the fields of TrainConfig and LMConfig a flag sets."""
    from dataclasses import fields

    from ..models.lm import LMConfig
    from ..training.config import TrainConfig

    train = {f.name for f in fields(TrainConfig) if "help" in f.metadata}
    model = {f.name for f in fields(LMConfig) if "help" in f.metadata}
    return train, model


def explicit(args) -> tuple[dict, dict, dict]:
    """The settings the user gave (or the recipe set): (training, model, cell options)."""
    from .flags import cell_options

    train_keys, model_keys = setting_names()
    given = {k: v for k, v in vars(args).items() if v is not None}
    train = {k: given[k] for k in train_keys if k in given}
    model = {k: given[k] for k in model_keys if k in given}
    return train, model, cell_options(args)


def configs(args):
    """The run ``args`` asks for: (TrainConfig, model options for ``Trainer.new``). What no flag
    and no recipe gave is the dataclasses' default."""
    from ..training import TrainConfig

    train, model, cell = explicit(args)
    return TrainConfig.from_dict(train), {**model, "cell_options": cell}


def apply_recipe(args) -> None:
    """Fill the settings the user left unset from ``--recipe`` (a flag given always wins)."""
    name = getattr(args, "recipe", None)
    if not name:
        return
    from . import UsageError
    from ..training.recipes import check_keys, load_recipe
    from .flags import CELL_OPTIONS

    if args.resume:
        raise UsageError("--recipe starts a new run; a resumed run keeps its own settings (drop --recipe)")
    recipe = load_recipe(name)
    train_keys, model_keys = setting_names()
    check_keys(recipe, train_keys | model_keys | set(CELL_OPTIONS))
    for key, value in recipe.settings.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)


def run(args) -> int:
    from . import UsageError
    from ..training import Trainer
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
    if train_given.get("sample_length") is not None and train_given["sample_length"] < 0:
        raise UsageError(f"--sample-length must not be negative, got {train_given['sample_length']}")

    from .flags import use_threads

    use_threads(args)
    info, device = D.setup(train_given.get("device", "auto"))
    say = Output() if info.is_writer else (lambda *a, **k: None)
    clean = True
    try:
        if args.resume:
            if args.resume is not True and args.out and Path(args.resume) != Path(args.out):
                raise UsageError(f"--resume {args.resume} and --out {args.out} name two runs; give one")
            out = Path(args.out if args.resume is True else args.resume) if (args.resume is not True or args.out) else None
            if out is None:
                raise UsageError("--resume needs the run: --resume RUN, or --out RUN --resume")
            trainer = Trainer.resume(out, train_given, {**model_given, "cell_options": cell_given},
                                     callback=Printer(say), info=info, device=device,
                                     check_memory=not args.skip_memory_check, allow_unverified=args.allow_unverified)
        else:
            out = Path(args.out) if args.out else D.broadcast_object(default_out(), info)
            cfg, model = configs(args)
            trainer = Trainer.new(cfg, model, out, callback=Printer(say), info=info, device=device,
                                  check_memory=not args.skip_memory_check)
            from ..training.autosize import WIDE_MINUTES, chosen_width

            if chosen_width(cfg, model, trainer.corpus.level) is not None:
                say(f"width: {trainer.model.config.hidden_size}, the default model's under a time budget of "
                    f"{WIDE_MINUTES:g} minutes or more (--hidden-size N sets it)")
        if args.threads is None and not trainer.cfg.steps and trainer.device.type == "cpu" and info.world_size == 1:
            # a time budget: the thread count that trains fastest now, by timing the run's own steps
            # (with --steps the count stays fixed, so that a run is reproducible bit for bit)
            from ..training.threads import ThreadChooser

            trainer.callback = ThreadChooser(trainer.callback)
        with StopOnSignals(trainer, say):
            result = trainer.run()
        if not result.get("trained", True):
            return 0
        if info.is_writer and (trainer.out / "metrics.csv").exists():
            from ..experiments.plots import plot_metrics

            try:
                drawn = plot_metrics(trainer.out / "metrics.csv", trainer.out / "loss.png", trainer.vocab.level)
            except OSError as err:  # the checkpoint is saved: only the picture is missing
                from ..training.loop import RunWriteError

                raise RunWriteError(f"could not draw {trainer.out / 'loss.png'} ({err.strerror or err}); the run "
                                    f"finished and its checkpoint of step {result['step']} is saved: only the loss "
                                    f"curve is missing") from None
            if drawn:
                say(f"loss curve: {trainer.out / 'loss.png'}")
        length = trainer.cfg.sample_length
        if info.is_writer and length and result["reason"] != "interrupted":
            from ..training import generate

            say(f"sample ({length} {trainer.vocab.level} tokens, temperature 0.8):")
            for text in generate(trainer.model, trainer.vocab, "", length, temperature=0.8, seed=0,
                                 device=trainer.device):
                say(text, end="", flush=True)
                if say.broken:
                    break
            say()
        if result["reason"] == "interrupted":
            say(f"interrupted at step {result['step']}; resume with: gatedrnn train --resume {trainer.out}")
            return 130
        return 0
    except BaseException:
        clean = False
        raise
    finally:
        D.teardown(clean)


class Output:
    """``print`` for progress lines that stops printing, instead of stopping the run, once stdout
    fails: a reader that went away (``| head``, a closed ``less``, a dead ``tee`` or ssh
    session) or a full disk behind a redirect. Training goes on and keeps saving; one line on
    stderr says so, and ``metrics.csv`` in the run folder keeps the progress."""

    def __init__(self):
        self.broken = None

    def __call__(self, *args, **kwargs):
        if self.broken:
            return
        try:
            print(*args, **kwargs)
        except OSError as err:
            from . import silence_stdout

            self.broken = err
            silence_stdout()
            try:
                print(f"gatedrnn train: note: stdout failed ({err.strerror or err}); training goes on without "
                      f"progress lines (metrics.csv in the run folder has them)", file=sys.stderr, flush=True)
            except OSError:
                pass


class StopOnSignals:
    """SIGINT and SIGTERM while a trainer runs: the first asks it to stop after the current step and
    save a checkpoint; a second stops at once (``KeyboardInterrupt``, nothing saved).

    Python runs a signal handler only between bytecodes, so during one long kernel (a big
    product, a whole backward inside torch) two signals merge into one call of the handler. The
    C-level handler also writes one byte per signal to the wakeup fd (``signal.set_wakeup_fd``):
    the handler counts them, and when two or more came before it could run, it stops at once,
    right after the kernel that was running.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, trainer, say):
        self.trainer, self.say = trainer, say
        self.previous = {}
        self.pipe = None
        self.old_wakeup = None

    def _count(self) -> int:
        if self.pipe is None:
            return 1
        n = 0
        try:
            while True:
                data = os.read(self.pipe[0], 512)
                if not data:
                    break
                n += sum(1 for b in data if b in self.SIGNALS)
        except (BlockingIOError, InterruptedError, OSError):
            pass
        return max(n, 1)

    def _stop_now(self, signum, frame):  # a second signal: out of the step at once, nothing saved
        raise KeyboardInterrupt

    def _stop(self, signum, frame):
        # not the previous handlers: a process started with SIGINT ignored (a background job)
        # would ignore the second one too
        for s in self.previous:
            signal.signal(s, self._stop_now)
        if self._count() >= 2:
            raise KeyboardInterrupt
        self.say(f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
                 "(again to stop at once)", flush=True)
        self.trainer.request_stop()

    def __enter__(self):
        self.previous = {s: signal.getsignal(s) for s in self.SIGNALS}
        try:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self.pipe = (r, w)
            self.old_wakeup = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (OSError, ValueError):  # not the main thread: the handlers cannot be set either
            self._close_pipe()
        for s in self.SIGNALS:
            signal.signal(s, self._stop)
        return self

    def _close_pipe(self):
        if self.pipe:
            for fd in self.pipe:
                os.close(fd)
        self.pipe = None

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if self.pipe is not None:
            signal.set_wakeup_fd(self.old_wakeup if self.old_wakeup is not None else -1)
            self._close_pipe()
        return False


def default_out() -> Path:
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def plural(n, word: str) -> str:
    """``1 minute``, ``2 minutes``, ``0.5 minutes``."""
    return f"{n:g} {word}{'' if n == 1 else 's'}"


def budget_text(t: dict) -> str:
    """``500 steps and 1 minute`` from a TrainConfig's dict."""
    return " and ".join(filter(None, [plural(t["steps"], "step") if t["steps"] else "",
                                      plural(t["minutes"], "minute") if t["minutes"] else ""])) or "no limit"


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
            budget = budget_text(t)
            decay = f", weight decay {t['weight_decay']:g}" if t["weight_decay"] else ""
            say(f"batch {t['batch_size']} x {t['seq_len']} tokens, {t['optimizer']} lr {t['lr']:g} ({t['schedule']}){decay}, "
                f"budget {budget}; run folder {d['out']}", flush=True)
            if t["precision"] == "auto" and d.get("precision") == "bf16":
                say("precision: bf16 autocast, which this processor computes itself (--precision float32 keeps "
                    "float32)", flush=True)
            if d.get("schedule_note"):
                say(d["schedule_note"], flush=True)
        elif event.kind == "log":
            steps = f"/{d['steps']}" if d["steps"] else ""
            say(f"step {event.step:>6}{steps} | loss {d['loss']:.4f} | {self.per_token(d)} | "
                f"{d['tokens_per_s'] / 1000:.1f}k tok/s | lr {d['lr']:.2e} | {clock(d['elapsed'])} | "
                f"ETA {clock(d['eta'])}", flush=True)
        elif event.kind == "threads":
            times = ", ".join(f"{n} thread{'s' if n > 1 else ''} {t * 1000:.0f} ms" for n, t in d["seconds_per_step"].items())
            say(f"threads: {d['threads']} (a step took {times}; --threads N fixes the count)", flush=True)
        elif event.kind == "dropout":
            from ..training.autodropout import REPEATS

            repeats = (f", a text that repeats itself (novelty {d['novelty']:.2f})"
                       if d.get("novelty", 1.0) < REPEATS[1] else "")
            say(f"dropout: {d['dropout']:g} (about {d['passes']:.1f} passes over the training text in the budget"
                f"{repeats}; --dropout P sets it)", flush=True)
        elif event.kind == "skip":
            say(f"step {event.step:>6} | {d['reason']}: step skipped (--on-nan skip)", flush=True)
        elif event.kind == "valid":
            mark = " (best)" if d["best"] else ""
            say(f"valid step {event.step:>6} | loss {d['loss']:.4f} | {self.per_token(d)}{mark}", flush=True)
        elif event.kind == "end" and not d.get("trained", True):
            t = d["train"]
            budget = budget_text(t)
            say(f"nothing to do: the run is at step {event.step} after {clock(d['elapsed'])}, which already reaches "
                f"its budget of {budget}; nothing was trained or written (give a larger --steps or --minutes to "
                f"train on)")
        elif event.kind == "end":
            why = {"steps": "step budget", "minutes": "time budget", "interrupted": "interrupted",
                   "paused": "paused"}.get(d["reason"], d["reason"])
            v = d["valid"]
            valid = ""
            if v:
                best = {"loss": d["best_valid_loss"], "bits_per_token": d["best_valid_loss"] / 0.6931471805599453}
                valid = f"; valid {self.per_token(v)} (best {self.per_token(best)})"
            say(f"done: {event.step} steps, {d['tokens']:,} tokens in {clock(d['elapsed'])} ({why}){valid}")
