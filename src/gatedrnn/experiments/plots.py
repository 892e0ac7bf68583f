"""The loss curve of a run, drawn from its ``metrics.csv`` (needs matplotlib; skipped without it),
in the unit ``gatedrnn train`` prints: perplexity for words, bits per character or byte otherwise."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from ..training.checkpoint import atomic_write

#: token level -> (axis label, the value from a row's loss in nats)
UNITS = {
    "word": ("perplexity", lambda nats: math.exp(min(nats, 700.0))),
    "char": ("bits per character (bpc)", lambda nats: nats / math.log(2)),
    "byte": ("bits per byte (bpb)", lambda nats: nats / math.log(2)),
}
BITS = ("bits per token", lambda nats: nats / math.log(2))


def read_metrics(csv_path) -> dict[str, tuple[list, list]]:
    """split -> (steps, losses in nats) from a run's ``metrics.csv``."""
    curves: dict[str, tuple[list, list]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            xs, ys = curves.setdefault(row["split"], ([], []))
            xs.append(int(row["step"]))
            ys.append(float(row["loss"]))
    return curves


def draw_metrics(curves: dict, level: str = "", title: str = ""):
    """The figure of ``read_metrics``'s curves, the y axis in the console's unit for ``level``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label, convert = UNITS.get(level, BITS)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for split, (xs, ys) in curves.items():
        # validation points are few (one in a short run): each is a marker big enough to see
        style = {"marker": "o", "markersize": 6} if split == "valid" or len(xs) == 1 else {}
        ax.plot(xs, [convert(y) for y in ys], label=split, **style)
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_metrics(csv_path, png_path, level: str = "") -> bool:
    """Write the train and validation curves of ``csv_path`` to ``png_path``; False if not drawn."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curves = read_metrics(csv_path)
    if not curves:
        return False
    fig = draw_metrics(curves, level, title=Path(csv_path).parent.name)
    try:  # never half a picture: a full disk leaves the previous one (or none), and an OSError
        atomic_write(png_path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)
    return True
