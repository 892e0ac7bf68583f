"""Training configuration: one dataclass of plain types, saved in every checkpoint."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "constant")
ON_NAN = ("stop", "skip")
PRECISIONS = ("float32", "bf16")


@dataclass
class TrainConfig:
    data: str = ""  # "" is the built-in corpus (the standard library's source)
    level: str = ""  # "" is the layout's own level (char for files, word for PTB/WikiText)
    seq_len: int = 100
    batch_size: int = 32
    steps: int = 0  # total optimizer steps of the run; 0: no limit (the clock decides)
    minutes: float = 0.0  # total wall-clock budget of the run; 0: no limit
    lr: float = 3e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only
    beta1: float = 0.9  # Adam's; 0 is RMSprop with Adam's bias correction (the Mogrifier recipes)
    beta2: float = 0.99
    schedule: str = "cosine"
    warmup: int = 100  # steps of linear warm-up
    min_lr_ratio: float = 0.1  # cosine ends at lr * min_lr_ratio
    clip: float = 1.0  # gradient norm clip; 0 turns it off
    seed: int = 0
    device: str = "auto"
    save_every: int = 500
    eval_every: int = 250
    eval_streams: int = 16  # validation: the split cut into this many contiguous streams
    log_every: int = 50
    on_nan: str = "stop"  # a non-finite loss or gradient: "stop" the run, or "skip" the step
    precision: str = "float32"  # "bf16": the training forward under bf16 autocast (weights stay float32)

    def __post_init__(self):
        positive = ("seq_len", "batch_size", "save_every", "eval_every", "eval_streams", "log_every")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
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
        if self.warmup < 0 or self.clip < 0 or self.weight_decay < 0:
            raise ValueError(f"warmup, clip and weight_decay must not be negative, got "
                             f"{self.warmup}, {self.clip}, {self.weight_decay}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
