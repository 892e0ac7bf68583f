"""A recurrent language model: embedding -> a stack of any gatedrnn cell -> dropout -> decoder.

    config = LMConfig(vocab_size=100, cell="mogrifier", hidden_size=256, cell_options={"rounds": 4})
    model = LanguageModel(config)
    logits, state = model(tokens, state)         # tokens (T, B) -> logits (T, B, V)

The config is a dataclass of plain types, saved in checkpoints next to the weights, so a model is
rebuilt from a checkpoint without unpickling anything.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from ..cells import make_cell
from ..torch_engine import layer
from ..torch_engine.regularisation import embedding_dropout

try:
    from ..torch_engine.regularisation import OPTIONS as MODULE_OPTIONS
except ImportError:  # an engine without module-level regularisers
    MODULE_OPTIONS = ()


@dataclass
class LMConfig:
    vocab_size: int
    cell: str = "lstm"
    hidden_size: int = 512
    num_layers: int = 1
    embed_size: int = 0  # 0: the recurrent output size (needed for tying), else the size asked for
    dropout: float = 0.0  # on the embedding, between layers and before the decoder
    embedding_dropout: float = 0.0  # whole words of the embedding table (AWD-LSTM)
    tie_weights: bool = False
    engine: str = "auto"
    cell_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.embed_size, int) or self.embed_size < 0:
            raise ValueError(f"embed_size must be a positive integer (or 0 for the output size), got {self.embed_size!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= float(self.embedding_dropout) < 1.0:
            raise ValueError(f"embedding_dropout must be in [0, 1), got {self.embedding_dropout!r}")
        # unknown cells and options fail here, clearly; regularisers are the module's, not the cell's
        make_cell(self.cell, **{k: v for k, v in self.cell_options.items() if k not in MODULE_OPTIONS})
        if self.tie_weights and self.embed_size and self.embed_size != self.output_size:
            raise ValueError(f"tied weights need embed_size equal to the recurrent output size "
                             f"({self.output_size}{' = proj_size' if self.proj_size else ' = hidden_size'}), "
                             f"got embed_size {self.embed_size}")

    @property
    def proj_size(self) -> int:
        return int(self.cell_options.get("proj_size", 0) or 0)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def input_size(self) -> int:
        return self.embed_size or self.output_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cell_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.cell_options.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}: expected some of {sorted(known)}")
        return cls(**d)


class LanguageModel(nn.Module):
    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.input_size)
        self.rnn = layer(c.cell, c.input_size, c.hidden_size, num_layers=c.num_layers,
                         dropout=c.dropout if c.num_layers > 1 else 0.0,
                         engine=c.engine, **c.cell_options)
        self.drop = nn.Dropout(c.dropout)
        self.decoder = nn.Linear(c.output_size, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight  # Press & Wolf; Inan et al.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not c.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_state(self, batch_size: int, device=None):
        """Zero recurrent state for ``batch_size`` streams: ``h`` or ``(h, c)``, each ``(L, B, size)``."""
        device = device or self.embedding.weight.device
        dtype = self.embedding.weight.dtype
        sizes = self.rnn.state_sizes
        zeros = tuple(torch.zeros(self.config.num_layers, batch_size, s, device=device, dtype=dtype) for s in sizes)
        return zeros if self.rnn.cell.has_cell_state else zeros[0]

    def forward(self, tokens: torch.Tensor, state=None):
        """``tokens`` ``(T, B)`` -> logits ``(T, B, V)`` and the final state."""
        x = self.drop(embedding_dropout(self.embedding, tokens, self.config.embedding_dropout, self.training))  # (T, B, E)
        y, state = self.rnn(x, state)  # (T, B, H or P)
        return self.decoder(self.drop(y)), state  # (T, B, V)

    @torch.no_grad()
    def step(self, token: torch.Tensor, state=None):
        """One token per stream, ``token`` ``(B,)`` -> logits ``(B, V)`` and the new state.

        Uses the module's single-step path where it has one: a sequence call per token is
        milliseconds on CPU for the oneDNN kernels.
        """
        x = self.embedding(token)  # (B, E)
        if hasattr(self.rnn, "step"):
            if state is None:
                state = self.init_state(token.shape[0], token.device)
            y, state = self.rnn.step(x, state)  # (B, H or P)
        else:
            y, state = self.rnn(x.unsqueeze(0), state)
            y = y[0]
        return self.decoder(y), state


def detach_state(state):
    """The state without its history: truncated BPTT stops gradients at segment boundaries."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return tuple(s.detach() for s in state)


def state_tensors(state) -> list:
    """The state as a list of tensors (for checkpoints and gathering across processes)."""
    if state is None:
        return []
    return [state] if isinstance(state, torch.Tensor) else list(state)


def state_from_tensors(tensors: list, has_cell_state: bool):
    if not tensors:
        return None
    return tuple(tensors) if has_cell_state else tensors[0]
