"""Training, evaluating and sampling language models; checkpoints; many processes."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluate import evaluate
from .loop import Event, Trainer, TrainingError, load_model
from .sampling import generate

__all__ = ["CheckpointError", "Event", "TrainConfig", "Trainer", "TrainingError", "evaluate", "generate",
           "load_checkpoint", "load_model", "save_checkpoint"]
