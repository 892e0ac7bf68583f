"""Training a language model with stateful truncated BPTT.

    trainer = Trainer.new(TrainConfig(steps=1000), {"cell": "lstm", "hidden_size": 256}, "runs/a")
    result = trainer.run()                       # events go to trainer.callback
    trainer = Trainer.resume("runs/a", {"steps": 2000})

Each step reads the next window of ``T`` tokens of ``B`` contiguous streams, starts from the state
the previous window ended in (detached: gradients stop at the window's start), and takes one
optimizer step. Progress is reported through ``callback(event)``; this module writes the run folder
(checkpoints, ``metrics.csv``, ``run.json``) and never prints; ``gatedrnn train`` draws ``loss.png``
from ``metrics.csv`` afterwards (``gatedrnn.experiments.plots``).

``steps`` and ``minutes`` are totals for the run: a resumed run goes on to the same end. With
``--steps`` the learning-rate schedule follows the step count and a run is reproducible bit for
bit on CPU, resumed or not; with ``--minutes`` alone it follows the clock. A resume that changes
the budget re-anchors the schedule where the run left it (``schedule_progress``); a resume of a
run that has used its budget does nothing.
"""
from __future__ import annotations

import json
import math
import time
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from ..data import Corpus, StreamBatcher, Vocabulary, load_corpus
from ..data.corpora import saved_split
from ..models.lm import LanguageModel, LMConfig, detach_state, state_from_tensors, state_tensors
from . import distributed as D
from .autodropout import DropoutChooser
from .autosize import sized_for_budget
from .checkpoint import BEST, LATEST, CheckpointError, atomic_write, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import TrainConfig
from .evaluate import evaluate
from .evaluate import metrics as loss_metrics
from .loading import CheckpointFallback, RunWriteError, describe_os_error, load_model  # noqa: F401 (load_model: API)
from .precision import resolve_precision
from .runfolder import METRICS_FIELDS, append_metrics_row, check_new_run_folder, truncate_metrics, write_failure  # noqa: F401
from .runlock import RunLock
from .schedule import budget_reached, lr_factor, schedule_end, schedule_progress, validation_due
from .sizing import check_fits, check_weights_fit_config

#: training settings a resumed run may change; the others define the run
RESUMABLE = {"steps", "minutes", "save_every", "eval_every", "eval_share", "log_every", "device", "eval_streams",
             "on_nan", "sample_length"}
#: under --on-nan skip, this many non-finite steps in a row stop the run: the model is not recovering
MAX_SKIPS_IN_A_ROW = 20


class TrainingError(ValueError, RuntimeError):
    """Training cannot go on (a non-finite loss, gradient or weight): one line for the user,
    saying where it happened and that the last good checkpoint is kept."""


@dataclass
class Event:
    """What the loop reports to its ``callback``: ``kind``, the ``step`` reached and ``data``.

    Kinds and their ``data``: ``start`` (corpus, params, device, model and train configs),
    ``step`` after every optimizer step (loss, lr), ``log`` every ``log_every`` steps (mean loss,
    bits_per_token, tokens_per_s, lr, elapsed, eta), ``valid`` after each validation (loss, ppl,
    bits_per_token, best), ``save`` (path, best), ``skip`` (a non-finite step skipped under
    ``on_nan="skip"``: reason) and ``end`` (step, reason, elapsed, tokens, valid, best_valid_loss).
    """

    kind: str
    step: int
    data: dict = field(default_factory=dict)


class Trainer:
    """One training run: model, optimizer, data position, carried state and the run folder.

    Made with ``Trainer.new`` (a new run) or ``Trainer.resume`` (from a run folder's latest
    checkpoint), then ``run()`` trains until the budget (``cfg.steps`` or ``cfg.minutes``, totals
    for the run) is spent, validating every ``eval_every`` steps (under a time budget, at most
    ``eval_share`` of the clock: ``schedule.validation_due``) and saving ``latest.pt``,
    ``best.pt``, ``metrics.csv`` and ``run.json`` in the folder (``gatedrnn train`` then draws
    ``loss.png`` with ``gatedrnn.experiments.plots.plot_metrics``). Progress goes to
    ``callback(event)`` (an ``Event``); nothing is printed. What ``gatedrnn train`` runs:

        cfg = TrainConfig(data="my.txt", minutes=10)
        trainer = Trainer.new(cfg, {"cell": "lstm", "hidden_size": 256}, "runs/mine", callback=print)
        result = trainer.run()        # {"step", "reason", "elapsed", "tokens", "valid", "best_valid_loss", ...}
        run = gatedrnn.load("runs/mine")

    Attributes a user may read: ``model`` (the ``LanguageModel``), ``vocab``, ``cfg``,
    ``model_cfg``, ``step``, ``out`` (the run folder), ``device``.
    """

    def __init__(self, cfg: TrainConfig, model_cfg: LMConfig, corpus: Corpus, out, *, checkpoint=None,
                 callback=None, info: D.DistInfo | None = None, device=None):
        self.cfg, self.model_cfg, self.corpus, self.out = cfg, model_cfg, corpus, Path(out)
        self.vocab = corpus.vocab
        self.callback = callback or (lambda event: None)
        self.info = info or D.DistInfo()
        self.device = device or D.resolve_device(cfg.device, self.info)
        self.stop_requested = False
        self.skipped_in_a_row = 0
        rows = self.info.rows(cfg.batch_size)
        self.batcher = StreamBatcher(corpus["train"], cfg.batch_size, cfg.seq_len, rows=rows)
        if len(corpus["valid"]) < 2:
            raise ValueError(f"the valid split has {len(corpus['valid'])} token(s); validation needs at least 2")

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        self.model = LanguageModel(model_cfg).to(self.device)
        if self.info.rank:
            torch.manual_seed(cfg.seed + self.info.rank)  # each rank its own dropout masks
        self.precision = resolve_precision(cfg.precision, self.model, self.device)  # "auto" decided here
        self.net = self.model
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.net = DDP(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                               weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                             weight_decay=cfg.weight_decay)
        self.step, self.tokens, self.elapsed, self.best = 0, 0, 0.0, math.inf
        self.state = None
        self.last_eval_s = 0.0
        self.valid_ended = None  # time.monotonic() when the last validation ended (validation_due)
        self.saved_step = -1
        self.anchor = None  # where the schedule was re-anchored after a budget change (schedule_progress)
        self.schedule_note = None  # what a budget change on resume did to the schedule, for the user
        self.valid_at_step = None  # the validation loss metrics.csv holds for the current step
        # the run folder is this trainer's while it sets it up and while it runs (runlock.py)
        self.lock = RunLock(self.out)
        weakref.finalize(self, self.lock.release)
        if checkpoint is not None:
            self._load(checkpoint)
        # a model that leaves its dropout unset gets it from the passes over the text (autodropout.py)
        self.dropout_chooser = DropoutChooser.for_run(cfg, model_cfg.to_dict(), corpus["train"], self.step)
        if self.dropout_chooser is not None and self.dropout_chooser.rate is not None:
            self.model.set_dropout(self.dropout_chooser.rate)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def new(cls, cfg: TrainConfig, model_options: dict, out, *, corpus: Corpus | None = None, callback=None,
            info: D.DistInfo | None = None, device=None, check_memory: bool = True) -> "Trainer":
        """A new run in the folder ``out`` (created; refused if it holds anything).

        ``cfg`` is the ``TrainConfig``; ``model_options`` the ``LMConfig`` fields but
        ``vocab_size`` (``{"cell": "gru", "hidden_size": 512, "num_layers": 2, "cell_options":
        {...}}``); ``corpus`` a ``Corpus`` already loaded (else ``cfg.data`` is read);
        ``callback`` receives every ``Event``; ``device`` overrides ``cfg.device``; ``info``
        describes the process group under torchrun (``None``: one process).
        ``check_memory``: refuse a model whose parameters and one training step would not fit in
        the memory available (``sizing.check_fits``), before anything is allocated.
        """
        out = Path(out)
        info = info or D.DistInfo()
        check_new_run_folder(out)
        corpus = corpus or load_corpus(cfg.data or None, cfg.level or None)
        model_cfg = LMConfig(vocab_size=len(corpus.vocab), **sized_for_budget(cfg, model_options, corpus.level))
        if check_memory:
            check_fits(model_cfg, D.resolve_device(device or cfg.device, info), cfg, rows=_row_count(cfg, info))
        trainer = cls(cfg, model_cfg, corpus, out, callback=callback, info=info, device=device)
        if info.enabled:
            D.dist.barrier()  # every rank has checked the folder before rank 0 fills it
        if info.is_writer:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise RunWriteError(f"cannot create the run folder {out} ({err.strerror or err}); choose another "
                                    f"--out") from None
            try:
                trainer.lock.acquire()  # a second trainer that raced for the same new folder stops here
                trainer._write_run_json()
            except OSError as err:
                trainer.lock.release()
                raise RunWriteError(f"cannot write to the run folder {out}: {describe_os_error(err)}; nothing was "
                                    f"saved and no lock is left behind; free some space or choose another --out, "
                                    f"then start again") from None
        return trainer

    @classmethod
    def resume(cls, out, train_overrides: dict | None = None, model_overrides: dict | None = None, *,
               callback=None, info: D.DistInfo | None = None, device=None, check_memory: bool = True,
               allow_unverified: bool = False) -> "Trainer":
        """Continue the run in ``out`` from its latest checkpoint (``callback``, ``info``,
        ``device`` and ``check_memory`` as in ``new``; ``allow_unverified`` loads a checkpoint
        without its digest). ``model_overrides`` may only repeat the run's model settings
        (``engine`` excepted: another kernel for the same math may be asked for).

        ``train_overrides`` may change the budget and cadences (``RESUMABLE``); any other setting,
        and any model setting, must match the run's or a ``ValueError`` says which differs. With
        ``latest.pt`` gone and ``best.pt`` there, the run goes on from ``best.pt`` (a
        ``CheckpointFallback`` warning says so): every step after it is redone, exactly.
        """
        out = Path(out)
        path = out / LATEST
        if not path.is_file():
            if (out / BEST).is_file():
                path = out / BEST
            elif (out / "run.json").is_file():
                found = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
                raise FileNotFoundError(f"--resume: the run in {out} has no checkpoint (expected {out / LATEST} or "
                                        f"{out / BEST}, found {found}): it stopped before its first checkpoint, or "
                                        f"its checkpoints were removed; nothing to resume, start it again with "
                                        f"another --out")
            else:
                what = "no such folder" if not out.exists() else f"no {LATEST} there"
                raise FileNotFoundError(f"--resume: {out} holds no run to resume ({what}; expected {out / LATEST})")
        ckpt = load_checkpoint(path, allow_unverified=allow_unverified)
        if path.name == BEST:
            warnings.warn(CheckpointFallback(f"{out / LATEST} is missing; resuming from {path} (step {ckpt['step']}): "
                                             f"the steps after it are trained again"))
        saved = TrainConfig.from_dict(ckpt["train_config"])
        model_cfg = LMConfig.from_dict(ckpt["model_config"])
        check_weights_fit_config(model_cfg, ckpt["model"], path)
        changes = {}
        for key, value in (train_overrides or {}).items():
            if value != getattr(saved, key) and key not in RESUMABLE:
                raise ValueError(f"the run in {out} has {key}={getattr(saved, key)!r}, but {key}={value!r} was asked "
                                 f"for (a resumed run keeps its settings; only {', '.join(sorted(RESUMABLE))} may change)")
            changes[key] = value
        model_overrides = dict(model_overrides or {})
        if "engine" in model_overrides:  # the same math by another kernel: free to change
            model_cfg.engine = model_overrides.pop("engine")
        asked = {**model_overrides.pop("cell_options", {}), **model_overrides}
        have = {**model_cfg.cell_options, **{k: v for k, v in model_cfg.to_dict().items() if k != "cell_options"}}
        # the cell first: another cell's options (--rounds on a GRU run) follow from asking for it
        for key, value in sorted(asked.items(), key=lambda kv: kv[0] != "cell"):
            if _norm(value) != _norm(have.get(key)):
                raise ValueError(f"the checkpoint's model has {key}={have.get(key)!r}, but {key}={value!r} was asked "
                                 f"for (a resumed run keeps its model)")
        cfg = TrainConfig.from_dict({**saved.to_dict(), **changes})
        if check_memory:
            resolved = D.resolve_device(device or cfg.device, info or D.DistInfo())
            check_fits(model_cfg, resolved, cfg, rows=_row_count(cfg, info or D.DistInfo()))
        vocab = Vocabulary.from_dict(ckpt["vocab"])
        corpus = load_corpus(saved.data or None, saved.level or None, vocab=vocab,
                             **saved_split(ckpt.get("corpus", {})))
        was, now = ckpt.get("corpus", {}).get("tokens_sha256"), corpus.description.get("tokens_sha256")
        if was and now and was != now:
            raise ValueError(f"the corpus {saved.data or '(built-in)'} changed since the run in {out} started (its "
                             f"tokens hash to SHA-256 {now[:16]}..., expected {was[:16]}...): resuming would train on "
                             f"other data; restore the corpus or start a new run")
        trainer = cls(cfg, model_cfg, corpus, out, checkpoint=ckpt, callback=callback, info=info, device=device)
        if schedule_end(saved) != schedule_end(cfg) and not budget_reached(cfg, trainer.step, trainer.elapsed):
            trainer._reanchor(saved)
        if trainer.info.is_writer:
            trainer.lock.acquire()  # before anything is written: a live trainer there stops us
            try:
                for stale in out.glob(".*.tmp-*"):  # a save cut off by a kill: atomic_write never renamed it
                    stale.unlink(missing_ok=True)
                trainer._truncate_metrics()
                if not budget_reached(cfg, trainer.step, trainer.elapsed):  # else nothing is done, nothing changed
                    trainer._write_run_json()
            except OSError as err:
                trainer.lock.release()
                raise trainer._write_error(err) from None
        return trainer

    def _reanchor(self, saved: TrainConfig) -> None:
        """The budget changed on resume: the schedule goes on from where it is to the new end."""
        was = schedule_progress(saved, self.step, self.elapsed, self.anchor)
        self.anchor = {"by": "steps" if self.cfg.steps else "minutes",
                       "at": self.step if self.cfg.steps else self.elapsed, "progress": was}
        if self.cfg.schedule == "cosine":
            now = self.cfg.lr * lr_factor(self.cfg, self.step, was)
            end = self.cfg.lr * lr_factor(self.cfg, self.step, 1.0)
            self.schedule_note = (f"the budget changed: the cosine schedule goes on from lr {now:.2e}, where the "
                                  f"run left it, down to {end:.2e} at the new end")

    def _load(self, ckpt: dict) -> None:
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(f"the checkpoint does not fit the model it describes: {str(err).splitlines()[0]}") from None
        self.batcher.load_state_dict(ckpt["data"])
        self.step, self.tokens = int(ckpt["step"]), int(ckpt["tokens"])
        self.elapsed, self.best = float(ckpt["elapsed"]), float(ckpt["best_valid"])
        rows = self.info.rows(self.cfg.batch_size)
        tensors = [t[:, rows].to(self.device) for t in ckpt["state"]]
        self.state = state_from_tensors(tensors, self.model.rnn.cell.has_cell_state)
        rngs = ckpt["rng"]
        if self.info.rank < len(rngs):
            set_rng_state(rngs[self.info.rank])
        self.anchor = ckpt.get("schedule", {}).get("anchor")

    # -- the run folder -------------------------------------------------------------------
    def _write_run_json(self) -> None:
        doc = {"train": self.cfg.to_dict(), "model": self.model_cfg.to_dict(), "corpus": self.corpus.description,
               "vocab_size": len(self.vocab), "world_size": self.info.world_size}
        text = json.dumps(doc, indent=2) + "\n"
        atomic_write(self.out / "run.json", lambda f: f.write(text.encode()))

    def _truncate_metrics(self) -> None:
        """Rows written after the checkpoint (a crash between saves) are dropped: they will be redone.
        A run resumed at its end has validated this step already: not again (``valid_at_step``)."""
        self.valid_at_step = truncate_metrics(self.out / "metrics.csv", self.step)

    def _metrics_row(self, split: str, loss: float, lr: float) -> None:
        if not self.info.is_writer:
            return
        # repr keeps every bit of the float: resumed runs can be compared exactly
        row = [self.step, self.tokens, f"{self.elapsed:.3f}", repr(lr), split, repr(loss), repr(loss / math.log(2))]
        try:
            append_metrics_row(self.out / "metrics.csv", row)
        except OSError as err:
            raise self._write_error(err) from None

    def _write_error(self, err: OSError) -> RunWriteError:
        return write_failure(self.out, self.step, self.saved_step, err)

    def checkpoint_payload(self) -> dict:
        """What ``save`` writes: weights, optimizer, step, data position, state, RNGs, configs, vocabulary."""
        state = D.gather_rows([t.detach() for t in state_tensors(self.state)], self.info)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": {"kind": self.cfg.schedule, "lr": self.optimizer.param_groups[0]["lr"], "anchor": self.anchor},
            "step": self.step, "tokens": self.tokens, "elapsed": self.elapsed, "best_valid": self.best,
            "data": self.batcher.state_dict(),
            "state": [t.cpu() for t in state],
            "rng": D.gather_objects(rng_state(), self.info),
            "model_config": self.model_cfg.to_dict(), "train_config": self.cfg.to_dict(),
            "vocab": self.vocab.to_dict(), "corpus": self.corpus.description,
            "world_size": self.info.world_size,
        }

    def save(self, best: bool = False) -> None:
        """Write ``latest.pt`` (and ``best.pt`` when ``best``); ``run`` calls this on its cadence."""
        # an update can overflow with a finite loss and gradient (the last step of a run is never
        # followed by a loss that would show it): a checkpoint is written only of finite weights;
        # every rank holds the same weights, so every rank decides alike
        bad = [n for n, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise TrainingError(f"the weights are not finite after step {self.step} ({bad[0]}"
                                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); stopped without saving, "
                                f"the last good checkpoint is kept in {self.out} (try a lower --lr)")
        payload = self.checkpoint_payload()  # every rank takes part in the gathers
        if not self.info.is_writer:
            return
        try:
            save_checkpoint(self.out / LATEST, payload)
            if best:
                save_checkpoint(self.out / BEST, payload)
        except OSError as err:  # atomic_write left the previous checkpoint as it was
            raise self._write_error(err) from None
        self.saved_step = self.step
        self.callback(Event("save", self.step, {"path": str(self.out / LATEST), "best": best}))

    # -- the loop -------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current step, saving a checkpoint (a signal handler may call this)."""
        self.stop_requested = True

    def _progress(self) -> float:
        return schedule_progress(self.cfg, self.step, self.elapsed, self.anchor)

    def _should_stop(self, until: int | None) -> str | None:
        cfg = self.cfg
        if cfg.steps and self.step >= cfg.steps:
            return "steps"
        if until is not None and self.step >= until:
            return "paused"
        # the final validation belongs to the budget too
        if cfg.minutes and self.elapsed + self.last_eval_s >= cfg.minutes * 60:
            return "minutes"
        if self.stop_requested:
            return "interrupted"
        return None

    def _sync(self, reason, progress):
        """Rank 0's decision and clock for everyone: ranks must stop on the same step."""
        if not self.info.enabled:
            return reason, progress
        return D.broadcast_object((reason, progress), self.info)

    def validate(self) -> dict:
        """The model's loss on the corpus's valid split now: loss, ppl, bits_per_token, tokens."""
        t0 = time.monotonic()
        result = evaluate(self.model, self.corpus["valid"], seq_len=max(self.cfg.seq_len, 128),
                          streams=self.cfg.eval_streams, device=self.device)
        self.last_eval_s = time.monotonic() - t0
        return result

    def run(self, until: int | None = None) -> dict:
        """Train until the budget (or step ``until``) is reached; returns the final metrics.

        The returned dict: ``step``, ``reason`` (``steps``, ``minutes``, ``paused`` at ``until``,
        ``interrupted`` after ``request_stop``), ``elapsed`` seconds, ``tokens``, ``valid`` (the
        last validation) and ``best_valid_loss``. A final validation and checkpoint close the run.
        The run folder stays locked while this runs and is released when it returns.
        """
        if self.info.is_writer:
            self.lock.acquire()
        try:
            return self._run(until)
        finally:
            self.lock.release()

    def _run(self, until: int | None) -> dict:
        cfg = self.cfg
        done = budget_reached(cfg, self.step, self.elapsed) if self.step else None
        if done:
            # a resumed run that has already used its budget: nothing is trained, validated or written
            result = {"step": self.step, "reason": done, "elapsed": self.elapsed, "tokens": self.tokens,
                      "valid": None, "best_valid_loss": self.best, "trained": False, "train": cfg.to_dict()}
            self.callback(Event("end", self.step, result))
            return result
        n_params = sum(p.numel() for p in self.model.parameters())
        self.callback(Event("start", self.step, {
            "corpus": self.corpus.summary(), "params": n_params, "device": str(self.device), "out": str(self.out),
            "world_size": self.info.world_size, "resumed": self.step > 0, "model": self.model_cfg.to_dict(),
            "train": cfg.to_dict(), "precision": self.precision, "schedule_note": self.schedule_note}))
        self.net.train()
        if self.dropout_chooser is not None and self.dropout_chooser.rate is not None:
            self._dropout_chosen()
        clock = time.monotonic() - self.elapsed
        window_loss, window_n, window_t0, window_tokens = 0.0, 0, time.monotonic(), 0
        tokens_per_step = cfg.batch_size * cfg.seq_len
        last_valid = None
        if self.valid_at_step is not None:
            last_valid = {**loss_metrics(self.valid_at_step), "step": self.step}
        reason = None
        while True:
            self.elapsed = time.monotonic() - clock
            reason, progress = self._sync(self._should_stop(until), self._progress())
            if reason:
                break
            x, y, new_epoch = self.batcher.next()
            if new_epoch:
                self.state = None  # the streams start over: nothing to carry
            x, y = x.to(self.device), y.to(self.device)
            lr = cfg.lr * lr_factor(cfg, self.step, progress)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                logits, state = self.net(x, self.state)  # (T, B, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))
            value = loss.item()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # checked after the backward: DDP has all-reduced the gradients by then, so a non-finite
            # loss on one rank makes every rank's gradient norm non-finite and all decide alike; a
            # finite loss with an infinite gradient would otherwise write non-finite weights
            params = [p for p in self.model.parameters() if p.grad is not None]
            if cfg.clip:
                norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.clip))
            else:
                norm = float(torch.nn.utils.get_total_norm([p.grad for p in params]))
            if not (math.isfinite(D.all_reduce_mean(value, self.info, self.device)) and math.isfinite(norm)):
                what = f"the loss is {value}" if not math.isfinite(value) else f"the gradient norm is {norm}"
                self.skipped_in_a_row += 1
                if cfg.on_nan == "stop" or self.skipped_in_a_row > MAX_SKIPS_IN_A_ROW:
                    why = "" if cfg.on_nan == "stop" else f" ({MAX_SKIPS_IN_A_ROW} steps skipped in a row before it)"
                    raise TrainingError(f"{what} at step {self.step + 1}{why}; stopped, the last good checkpoint is "
                                        f"kept in {self.out} (try a lower --lr or --clip, or --on-nan skip)")
                # the step is spent without an update: its window is consumed and the schedule moves on,
                # and the carried state, possibly non-finite, starts over
                self.optimizer.zero_grad(set_to_none=True)
                self.state = None
                self.step += 1
                self.tokens += tokens_per_step
                self.callback(Event("skip", self.step, {"reason": what}))
                if self.step % cfg.save_every == 0:
                    self.save()
                continue
            self.skipped_in_a_row = 0
            try:
                self.optimizer.step()
            except RuntimeError as err:
                # AdamW with an absurd lr: its step size (lr over the bias correction) overflows a
                # float before any weight is non-finite; the weights may be half updated, and are
                # never saved from here
                if "overflow" not in str(err):
                    raise
                raise TrainingError(f"the optimizer's update overflowed at step {self.step + 1} (lr {lr:g}: "
                                    f"{str(err).splitlines()[0]}); stopped, the last good checkpoint is kept in "
                                    f"{self.out} (try a lower --lr)") from None
            self.state = detach_state(state)
            self.step += 1
            self.tokens += tokens_per_step
            chooser = self.dropout_chooser
            if chooser is not None and chooser.on_step(self.step, self.tokens, self.elapsed) is not None:
                self._dropout_chosen()
            window_loss += value
            window_n += 1
            window_tokens += tokens_per_step
            self.callback(Event("step", self.step, {"loss": value, "lr": lr}))
            if self.step % cfg.log_every == 0:
                now = time.monotonic()
                self.elapsed = now - clock
                mean = D.all_reduce_mean(window_loss / window_n, self.info, self.device)
                self._metrics_row("train", mean, lr)
                rate = window_tokens / max(now - window_t0, 1e-9)
                self.callback(Event("log", self.step, {
                    "loss": mean, "bits_per_token": mean / math.log(2), "tokens_per_s": rate, "lr": lr,
                    "elapsed": self.elapsed, "eta": self._eta(rate), "epoch": self.batcher.epoch,
                    "steps": cfg.steps or None}))
                window_loss, window_n, window_t0, window_tokens = 0.0, 0, now, 0
            best = False
            if self.step % cfg.eval_every == 0 and self._validation_due():
                last_valid, best = self._validate_and_record(lr)
            if best or self.step % cfg.save_every == 0:
                self.save(best=best)
        lr = self.optimizer.param_groups[0]["lr"]
        best = False
        if self.step and (last_valid is None or last_valid["step"] != self.step):
            last_valid, best = self._validate_and_record(lr)
        self.elapsed = time.monotonic() - clock
        if best or self.saved_step != self.step:
            self.save(best=best)
        result = {"step": self.step, "reason": reason, "elapsed": self.elapsed, "tokens": self.tokens,
                  "valid": last_valid, "best_valid_loss": self.best, "trained": True}
        self.callback(Event("end", self.step, result))
        return result

    def _dropout_chosen(self) -> None:
        """The chooser has its rate: every rank takes rank 0's, the model and ``run.json`` get it."""
        chooser = self.dropout_chooser
        rate, passes, new = D.broadcast_object((chooser.rate, chooser.passes, chooser.novelty), self.info)
        self.model.set_dropout(rate)  # (and so self.model_cfg, the model's config)
        self.dropout_chooser = None
        if self.info.is_writer:
            self._write_run_json()
        self.callback(Event("dropout", self.step, {"dropout": rate, "passes": passes, "novelty": new}))

    def _validation_due(self) -> bool:
        """``validation_due`` now, decided by rank 0 for every rank."""
        trained = math.inf if self.valid_ended is None else time.monotonic() - self.valid_ended
        due = validation_due(self.cfg, self.step, trained, self.last_eval_s)
        return D.broadcast_object(due, self.info) if self.info.enabled else due

    def _validate_and_record(self, lr):
        result = None
        best = False
        if self.info.is_writer:
            result = {**self.validate(), "step": self.step}
            best = result["loss"] < self.best
            self.best = min(self.best, result["loss"])
            self._metrics_row("valid", result["loss"], lr)
            self.callback(Event("valid", self.step, {**result, "best": best, "elapsed": self.elapsed}))
        if self.info.enabled:
            result, best, self.best, self.last_eval_s = D.broadcast_object((result, best, self.best, self.last_eval_s), self.info)
        self.valid_ended = time.monotonic()
        return result, best

    def _eta(self, tokens_per_s: float) -> float | None:
        cfg = self.cfg
        left = []
        if cfg.steps:
            left.append((cfg.steps - self.step) * cfg.batch_size * cfg.seq_len / max(tokens_per_s, 1e-9))
        if cfg.minutes:
            left.append(cfg.minutes * 60 - self.elapsed)
        return max(0.0, min(left)) if left else None


def _row_count(cfg: TrainConfig, info: D.DistInfo) -> int:
    """The batch rows this process trains on."""
    return len(range(cfg.batch_size)[info.rows(cfg.batch_size)])


def _norm(value):
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value
