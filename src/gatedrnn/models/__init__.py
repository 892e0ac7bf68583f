"""Models built from the recurrent modules: the language model (and task heads)."""
from .lm import LanguageModel, LMConfig, detach_state

__all__ = ["LanguageModel", "LMConfig", "detach_state"]
