"""Task heads: a recurrent stack of any cell with a linear readout.

    model = TaskModel("lstm", input_size=2, hidden_size=64, output_size=1, readout="last")
    out = model(x)            # x (T, B, I) -> (B, O) for readout "last", (T, B, O) for "all"
"""
from __future__ import annotations

import torch
from torch import nn

from ..torch_engine import layer

READOUTS = ("last", "all")


class TaskModel(nn.Module):
    """``layer(cell, ...)`` followed by ``nn.Linear`` on its output at the last step or every step."""

    def __init__(self, cell: str, input_size: int, hidden_size: int, output_size: int,
                 readout: str = "last", num_layers: int = 1, **cell_options):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.cell_name, self.readout = cell, readout
        self.rnn = layer(cell, input_size, hidden_size, num_layers=num_layers, **cell_options)
        self.head = nn.Linear(self.rnn.state_sizes[0], output_size)

    def forward(self, x: torch.Tensor, hx=None) -> torch.Tensor:
        y, _ = self.rnn(x, hx)  # (T, B, R)
        return self.head(y[-1] if self.readout == "last" else y)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["TaskModel", "READOUTS", "count_parameters"]
