"""The NumPy reference engine: the oracle for every other engine and the place a learner reads."""
from .engine import backward, forward, init_params
from .gradcheck import gradcheck, relative_error

__all__ = ["init_params", "forward", "backward", "gradcheck", "relative_error"]
