"""Training, evaluating and sampling language models; checkpoints; many processes."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluate import evaluate
from .loop import Event, Trainer, TrainingError, load_model
from .run import Run, RunConfig, load
from .sampling import generate

__all__ = ["CheckpointError", "Event", "TrainConfig", "Trainer", "TrainingError", "evaluate", "generate",
           "load", "load_checkpoint", "load_model", "Run", "RunConfig", "save_checkpoint"]
