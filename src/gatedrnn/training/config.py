"""Training configuration: one dataclass of plain types, saved in every checkpoint.

Its defaults are the only ones: ``gatedrnn train`` builds its flags, their defaults and their help
from these fields (``metadata["help"]``), and a recipe or a flag overlays them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
ON_NAN = ("stop", "skip")
PRECISIONS = ("auto", "float32", "bf16")
LEVELS = ("char", "word", "byte")


#: the time budget of a run given neither ``steps`` nor ``minutes``
DEFAULT_MINUTES = 5.0
#: AdamW's default weight decay (decoupled: each step shrinks the weights by lr times this). At
#: the same steps it took 0.6-2.6% off the held-out loss of the default character model on three
#: texts, read 0.8 to 8 times, and added 0.2% on a fourth; 0.2 did worse where a text is read
#: fewer times (benchmarks/RESULTS.md, "Weight decay by default"). SGD's is coupled (an L2 term
#: in the gradient), and stays 0
ADAMW_WEIGHT_DECAY = 0.1


def setting(default, help: str, group: str = "training", **meta):
    """A field with its command-line help (``gatedrnn train`` builds its flags from these):
    ``group`` is the help section, ``choices`` the allowed values, ``default_text`` what the help
    says in place of the default's value."""
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass
class TrainConfig:
    """How a language model is trained. The defaults are ``gatedrnn train``'s: chosen to pass 2
    bits per character within 5 minutes on 2 CPU cores (see the README)."""

    data: str = setting("", "text file (split 95/2.5/2.5, in stripes) or folder: PTB, WikiText, "
                              "train/valid/test.txt, enwik8",
                        group="data", metavar="PATH", default_text="this Python's standard library source")
    level: str = setting("", "tokens", group="data", choices=LEVELS,
                         default_text="word for PTB/WikiText, byte for enwik8, char otherwise")
    seq_len: int = setting(64, "BPTT window")
    batch_size: int = setting(32, "parallel streams, across all processes")
    steps: int = setting(0, "total optimizer steps of the run", default_text="no limit, the clock decides")
    #: ``None`` resolves to ``DEFAULT_MINUTES`` when ``steps`` is 0, else to 0 (no limit)
    minutes: float | None = setting(None, "total wall-clock budget of the run", type=float,
                                    default_text=f"{DEFAULT_MINUTES:g} without --steps")
    lr: float = setting(8e-3, "peak learning rate")
    optimizer: str = setting("adamw", "optimizer", choices=OPTIMIZERS)
    #: ``None`` resolves to ``ADAMW_WEIGHT_DECAY`` for AdamW (decoupled) and to 0 for SGD
    weight_decay: float | None = setting(None, "weight decay", type=float,
                                         default_text=f"{ADAMW_WEIGHT_DECAY:g} with adamw, 0 with sgd")
    momentum: float = setting(0.0, "SGD momentum")
    beta1: float = setting(0.9, "Adam's first-moment decay (0: RMSprop with Adam's bias correction)")
    beta2: float = setting(0.99, "Adam's second-moment decay")
    schedule: str = setting("cosine", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup: int = setting(30, "steps of linear warm-up")
    min_lr_ratio: float = setting(0.1, "the cosine schedule ends at lr times this")
    clip: float = setting(1.0, "gradient norm clip, 0 for none")
    seed: int = setting(0, "seed of the initial weights, dropout masks and data order")
    device: str = setting("auto", "cpu, cuda, cuda:N or auto")
    save_every: int = setting(500, "steps between checkpoints", group="run")
    eval_every: int = setting(250, "steps between validations", group="run")
    eval_share: float = setting(0.03, "under a time budget, the most of the clock validations take: one is put off "
                                "to a later multiple of --eval-every until the training since the last took its "
                                "time over this (0: every --eval-every steps)", group="run")
    eval_streams: int = setting(16, "validation streams: the split cut into this many contiguous streams (1 is exact)",
                                group="run")
    log_every: int = setting(50, "steps between progress lines", group="run")
    on_nan: str = setting("stop", "a non-finite loss or gradient stops the run (the last checkpoint kept) or skips "
                          "the step", choices=ON_NAN)
    precision: str = setting("auto", "bf16: the forward under bf16 autocast, weights and gradients float32; auto: bf16 "
                             "where the run is on a CPU with bf16 arithmetic of its own (AVX512-BF16, AMX) and "
                             "torch's kernels run the model's recurrent layers there, float32 elsewhere",
                             choices=PRECISIONS)
    sample_length: int = setting(400, "tokens `gatedrnn train` samples at the end of the run (0: none; a resumed run "
                                 "keeps its own)", group="run")

    def __post_init__(self):
        if self.minutes is None:
            self.minutes = 0.0 if self.steps else DEFAULT_MINUTES
        if self.weight_decay is None:
            self.weight_decay = ADAMW_WEIGHT_DECAY if self.optimizer == "adamw" else 0.0
        positive = ("seq_len", "batch_size", "save_every", "eval_every", "eval_streams", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.sample_length, int) or isinstance(self.sample_length, bool) or self.sample_length < 0:
            raise ValueError(f"sample_length must not be negative, got {self.sample_length!r}")
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ValueError(f"steps must be a positive integer (or 0 for no limit), got {self.steps!r}")
        if self.minutes < 0:
            raise ValueError(f"minutes must be positive (or 0 for no limit), got {self.minutes!r}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.on_nan not in ON_NAN:
            raise ValueError(f"on_nan must be one of {', '.join(ON_NAN)}, got {self.on_nan!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"beta1 and beta2 must be in [0, 1), got {self.beta1!r} and {self.beta2!r}")
        if not 0 <= self.eval_share < 1:
            raise ValueError(f"eval_share must be in [0, 1), got {self.eval_share!r}")
        if self.warmup < 0 or self.clip < 0 or self.weight_decay < 0:
            raise ValueError(f"warmup, clip and weight_decay must not be negative, got "
                             f"{self.warmup}, {self.clip}, {self.weight_decay}")

    def to_dict(self) -> dict:
        """The settings as a dict of plain types (what checkpoints and ``run.json`` hold)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from ``d``, ``to_dict``'s form; keys it does not know (from other versions) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
