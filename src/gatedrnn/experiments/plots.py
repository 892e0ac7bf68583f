"""The loss curve of a run, drawn from its ``metrics.csv`` (needs matplotlib; skipped without it)."""
from __future__ import annotations

import csv
from pathlib import Path


def plot_metrics(csv_path, png_path) -> bool:
    """Write the train and validation curves (bits per token against step); False if not drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    curves: dict[str, tuple[list, list]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            xs, ys = curves.setdefault(row["split"], ([], []))
            xs.append(int(row["step"]))
            ys.append(float(row["bits_per_token"]))
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for split, (xs, ys) in curves.items():
        ax.plot(xs, ys, marker="o" if split == "valid" else None, markersize=3, label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("bits per token")
    ax.set_title(Path(csv_path).parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = Path(png_path).with_name(f".{Path(png_path).name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(png_path)
    return True
