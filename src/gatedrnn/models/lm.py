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

from ..cells import CELLS, make_cell
from ..torch_engine import layer
from ..torch_engine.modules import ENGINES
from ..torch_engine.regularisation import Dropout, dropout, embedding_dropout

try:
    from ..torch_engine.regularisation import OPTIONS as MODULE_OPTIONS
except ImportError:  # an engine without module-level regularisers
    MODULE_OPTIONS = ()


def _help(default, text: str, **meta):
    """A field with its command-line help: ``gatedrnn train`` builds its model flags from these."""
    return field(default=default, metadata={"help": text, "group": "model", **meta})


#: the embedding of the default model: a character vocabulary needs no wider one, and a narrower
#: input product leaves time for a wider recurrent layer (benchmarks/RESULTS.md, "The first hour")
EMBED_SIZE = 128


@dataclass
class LMConfig:
    """The language model's shape. The defaults are ``gatedrnn train``'s."""

    vocab_size: int
    cell: str = _help("lstm", f"the recurrent cell: one of {', '.join(CELLS)}")
    hidden_size: int = _help(384, "hidden units per layer", type=int,
                             default_text="384; 512 for `gatedrnn train` of an LSTM on characters or bytes under "
                                          "a time budget of 5 minutes or more")
    num_layers: int = _help(1, "stacked recurrent layers")
    #: ``None`` resolves to ``EMBED_SIZE``, or to 0 (the recurrent output size) where that is no
    #: larger or the weights are tied; 0 is always the output size (runs saved with it keep it)
    embed_size: int | None = _help(None, "embedding size (0: the recurrent output size)", type=int,
                                   default_text=f"{EMBED_SIZE}, or the output size where smaller or tied")
    #: ``None``: 0 for the model alone; a training run chooses it from its budget (training/autodropout.py)
    dropout: float | None = _help(None, "dropout on the embeddings, between layers and before the decoder", type=float,
                                  default_text="chosen from the passes over the text the budget allows, "
                                               "0 if another regulariser is set")
    embedding_dropout: float = _help(0.0, "drop whole words of the embedding table (AWD-LSTM)")
    tie_weights: bool = _help(False, "share the embedding and decoder weights (Press & Wolf; Inan et al.)")
    #: the decoder reads the sum of every layer's output, not the last layer's alone (the
    #: Mogrifier paper's setup, Melis et al. 2020): lower layers get a short path to the loss
    sum_layer_outputs: bool = _help(False, "the decoder reads the sum of every layer's output (the Mogrifier "
                                    "paper's setup)")
    engine: str = _help("auto", "recurrent kernels", choices=ENGINES)
    cell_options: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.embed_size is None:
            self.embed_size = 0 if self.tie_weights or self.output_size <= EMBED_SIZE else EMBED_SIZE
        if not isinstance(self.embed_size, int) or self.embed_size < 0:
            raise ValueError(f"embed_size must be a positive integer (or 0 for the output size), got {self.embed_size!r}")
        if self.dropout is not None and not 0.0 <= float(self.dropout) < 1.0:
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
        """The config as a dict of plain types (what checkpoints hold)."""
        d = asdict(self)
        d["cell_options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.cell_options.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        """A config from ``d``, ``to_dict``'s form; keys it does not know are ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}: expected some of {sorted(known)}")
        return cls(**d)


class LanguageModel(nn.Module):
    """Embedding -> a stack of any gatedrnn cell -> dropout -> decoder, built from an ``LMConfig``.

    ``logits, state = model(tokens, state)``: ``tokens`` ``(T, B)`` of ids, ``logits``
    ``(T, B, V)``, ``state`` the recurrent state (``h`` or ``(h, c)``, each ``(L, B, size)``;
    ``None`` is zeros), to pass to the next call for stateful reading. ``model.step(token,
    state)`` reads one token per stream ``(B,)`` and returns ``(B, V)`` logits, through the
    single-step cells (fast for generation). A trained one is ``gatedrnn.load(run).model``.
    """

    def __init__(self, config: LMConfig):
        super().__init__()
        self.config = config
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.input_size)
        if c.sum_layer_outputs and c.num_layers > 1:
            self.rnn = SummedStack(c)
        else:
            self.rnn = layer(c.cell, c.input_size, c.hidden_size, num_layers=c.num_layers,
                             dropout=(c.dropout or 0.0) if c.num_layers > 1 else 0.0,
                             engine=c.engine, **c.cell_options)
        self.drop = Dropout(c.dropout or 0.0)  # torch.nn.Dropout's distribution, in one pass on CPU
        self.decoder = nn.Linear(c.output_size, c.vocab_size)
        if c.tie_weights:
            self.decoder.weight = self.embedding.weight  # Press & Wolf; Inan et al.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not c.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def set_dropout(self, p: float) -> None:
        """Set the dropout rate ``p`` (``LMConfig.dropout``) of the model built: on the embeddings,
        between layers and before the decoder, from the next forward on."""
        self.config.dropout = float(p)
        self.drop.p = float(p)
        if isinstance(self.rnn, SummedStack):
            self.rnn.p_between_plain = float(p)
        elif self.config.num_layers > 1:
            self.rnn.dropout = float(p)

    def init_state(self, batch_size: int, device=None):
        """Zero recurrent state for ``batch_size`` streams: ``h`` or ``(h, c)``, each ``(L, B, size)``,
        on ``device`` (the model's by default)."""
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


class SummedStack(nn.Module):
    """``num_layers`` single-layer modules whose outputs are summed; the state is stacked as the
    one-module stack stacks it (``(L, B, size)``), so training, checkpoints and sampling see no
    difference.

    Regularisers map onto the layers: ``dropout_input`` on the first layer's input,
    ``dropout_between`` on each later layer's input, ``dropout_output`` on the sum (one mask per
    sequence, as the module draws it); ``dropout_state``, ``weight_drop`` and zoneout in every layer.
    """

    def __init__(self, c: LMConfig):
        super().__init__()
        options = dict(c.cell_options)
        between = float(options.pop("dropout_between", 0.0) or 0.0)
        self.p_output = float(options.pop("dropout_output", 0.0) or 0.0)
        first = options.pop("dropout_input", 0.0) or 0.0
        self.p_between_plain = c.dropout or 0.0  # torch.nn's fresh-mask-per-step dropout between layers
        self.layers = nn.ModuleList()
        for k in range(c.num_layers):
            size_in = c.input_size if k == 0 else c.output_size
            p_in = first if k == 0 else between
            extra = {"dropout_input": p_in} if p_in else {}
            self.layers.append(layer(c.cell, size_in, c.hidden_size, engine=c.engine, **options, **extra))
        self.cell = self.layers[0].cell
        self.state_sizes = self.layers[0].state_sizes
        self.num_layers = c.num_layers

    def _split(self, state, B, like):
        if state is None:
            return [None] * self.num_layers
        parts = state if isinstance(state, tuple) else (state,)
        return [tuple(s[k : k + 1] for s in parts) if self.cell.has_cell_state else parts[0][k : k + 1]
                for k in range(self.num_layers)]

    def _join(self, states):
        if self.cell.has_cell_state:
            return tuple(torch.cat([s[i] for s in states]) for i in range(len(self.state_sizes)))
        return torch.cat(states)

    def _drop_sum(self, total, shape):
        if not (self.training and self.p_output):
            return total
        keep = torch.empty(shape, device=total.device, dtype=torch.float32).bernoulli_(1 - self.p_output)
        return total * (keep / (1 - self.p_output)).to(total.dtype)

    def forward(self, x, state=None):
        """``x`` ``(T, B, E)`` -> the summed outputs ``(T, B, H)`` and the stacked final state."""
        total, states, inp = 0, [], x
        for k, (module, s0) in enumerate(zip(self.layers, self._split(state, x.shape[1], x))):
            if k and self.training and self.p_between_plain:
                inp = dropout(inp, self.p_between_plain)
            inp, sn = module(inp, s0)  # (T, B, H)
            states.append(sn)
            total = total + inp
        return self._drop_sum(total, (1, x.shape[1], total.shape[-1])), self._join(states)

    def step(self, x, state):
        """One token per stream: ``x`` ``(B, E)`` -> ``(B, H)`` and the stacked state."""
        total, states, inp = 0, [], x
        for module, s0 in zip(self.layers, self._split(state, x.shape[0], x)):
            inp, sn = module.step(inp, s0)
            states.append(sn)
            total = total + inp
        return self._drop_sum(total, (x.shape[0], total.shape[-1])), self._join(states)


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
