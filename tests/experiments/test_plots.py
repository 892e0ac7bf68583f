"""The loss curve: drawn in the unit the console prints, a single validation point visible."""
import math

import pytest

from gatedrnn.experiments.plots import draw_metrics, plot_metrics, read_metrics

ROWS = [(10, "train", 5.0), (20, "train", 4.5), (30, "train", 4.2), (30, "valid", 4.6)]


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "metrics.csv"
    lines = ["step,tokens,elapsed_s,lr,split,loss,bits_per_token"]
    lines += [f"{s},0,0.0,0.001,{split},{loss!r},{loss / math.log(2)!r}" for s, split, loss in ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("level,label,value", [
    ("word", "perplexity", math.exp(4.6)),  # the console prints ppl for words
    ("char", "bits per character (bpc)", 4.6 / math.log(2)),
    ("byte", "bits per byte (bpb)", 4.6 / math.log(2)),
])
def test_the_axis_is_the_console_s_unit(metrics, level, label, value):
    import matplotlib.pyplot as plt

    fig = draw_metrics(read_metrics(metrics), level)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert ax.get_ylabel() == label
    valid = lines["valid"]
    assert list(valid.get_ydata()) == pytest.approx([value], rel=1e-12)
    assert valid.get_marker() == "o" and valid.get_markersize() >= 6  # one point, visible on its own
    plt.close(fig)


def test_plot_metrics_writes_a_png(metrics, tmp_path):
    assert plot_metrics(metrics, tmp_path / "loss.png", "word")
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
