"""ONNX export of a language model: tokens and the recurrent state in, logits and the new state out.

    export_lm(model, "model.onnx", seq_len=1)      # one token per stream: a generation step

The graph's inputs are ``tokens`` ``(T, B)`` int64 and ``h0`` (and ``c0``) ``(L, B, size)``; its
outputs ``logits`` ``(T, B, V)`` and ``h`` (and ``c``). The batch size is free. The sequence
length is the one exported unless the model runs torch.nn's kernels (a plain configuration under
``engine="auto"``): the other cells are unrolled over time (see ``RecurrentBase.resolve_engine``).
Feeding the state back steps through a text of any length. The model's config (and the
vocabulary, when given) go into the file's metadata as JSON, ``gatedrnn.model_config`` and
``gatedrnn.vocab``, so the one file holds what a runtime needs to turn text into logits.
"""
from __future__ import annotations

import json
import warnings

import torch
from torch import nn

from ..models.lm import state_from_tensors, state_tensors


class _LMGraph(nn.Module):
    """The model with its state flattened into separate tensors, as ONNX graph inputs take it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens, *state):
        logits, new = self.model(tokens, state_from_tensors(list(state), self.model.rnn.cell.has_cell_state))
        return (logits, *state_tensors(new))


def io_names(model) -> tuple[list[str], list[str]]:
    """The graph's input and output names for ``model``."""
    n = len(model.rnn.state_sizes)
    return ["tokens", *("h0", "c0")[:n]], ["logits", *("h", "c")[:n]]


def export_lm(model, path, seq_len: int = 1, batch_size: int = 1, dynamo: bool = False, vocab=None) -> None:
    """Write ``model`` (a ``LanguageModel``) to ``path`` as ONNX, in evaluation mode.

    ``dynamo=False`` uses the TorchScript exporter: seconds, where the torch.export-based one
    takes tens of seconds for an unrolled loop. Both give the same graph semantics.
    """
    if seq_len <= 0 or batch_size <= 0:
        raise ValueError(f"seq_len and batch_size must be positive, got {seq_len} and {batch_size}")
    was_training = model.training
    model.eval()
    try:
        device = model.embedding.weight.device
        tokens = torch.zeros(seq_len, batch_size, dtype=torch.long, device=device)
        state = state_tensors(model.init_state(batch_size, device))
        inputs, outputs = io_names(model)
        axes = {name: {1: "batch"} for name in inputs + outputs}
        with warnings.catch_warnings():
            # the tracer warns that Python loops and shape checks are fixed in the graph: by design
            warnings.simplefilter("ignore")
            kwargs = {"dynamic_axes": axes} if not dynamo else {"dynamic_shapes": None}
            torch.onnx.export(_LMGraph(model), (tokens, *state), str(path), input_names=inputs,
                              output_names=outputs, dynamo=dynamo, **kwargs)
    finally:
        model.train(was_training)
    import onnx

    graph = onnx.load(str(path))
    meta = {"gatedrnn.model_config": model.config.to_dict()}
    if vocab is not None:
        meta["gatedrnn.vocab"] = vocab.to_dict()
    onnx.helper.set_model_props(graph, {k: json.dumps(v) for k, v in meta.items()})
    onnx.save(graph, str(path))
