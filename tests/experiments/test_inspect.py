"""inspect: activations step by step, the features, and a page that a browser renders."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from gatedrnn.data.tokenizers import Vocabulary
from gatedrnn.models.lm import LanguageModel, LMConfig
from gatedrnn.experiments.inspect import activations, correlate, inspect_text, text_features

TEXT = 'print("a (b)", x)\nif (y): z = \'q\'\n'


def model_and_vocab(cell="lstm", layers=1):
    vocab = Vocabulary.build("char", TEXT)
    torch.manual_seed(0)
    return LanguageModel(LMConfig(vocab_size=len(vocab), cell=cell, hidden_size=12, num_layers=layers)), vocab


def test_features_follow_quotes_brackets_and_columns():
    f = text_features(list('a"(b"(c)\nd'))
    assert f["inside quotes"].tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert f["inside brackets"].tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]  # "(" in quotes is text
    assert f["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1]


def test_correlate_is_pearson_and_zero_for_constants():
    rng = np.random.default_rng(0)
    acts, feat = rng.standard_normal((50, 3)), rng.standard_normal(50)
    acts[:, 2] = 1.0
    r = correlate(acts, feat)
    np.testing.assert_allclose(r[:2], [np.corrcoef(acts[:, k], feat)[0, 1] for k in range(2)], rtol=1e-12)
    assert r[2] == 0.0


def test_activations_are_the_sequence_call_s_states():
    model, vocab = model_and_vocab(layers=2)
    ids = vocab.encode(TEXT)
    acts = activations(model, ids)
    assert acts["h"].shape == (len(TEXT), 2, 12) and acts["c"].shape == (len(TEXT), 2, 12)
    with torch.no_grad():
        y, (h, c) = model.rnn(model.embedding(torch.as_tensor(ids.astype(np.int64))).unsqueeze(1))
    np.testing.assert_allclose(acts["h"][:, 1], y[:, 0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["c"][-1], c[:, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_page_and_its_errors():
    model, vocab = model_and_vocab()
    page = inspect_text(model, vocab, TEXT, kind="h", unit=3)
    assert page.unit == 3 and page.values.shape == (len(TEXT),)
    assert page.html.count('<span class="t"') == len(TEXT) * (1 + 3)  # main text and one per feature
    assert "http" not in page.html  # self-contained: nothing fetched
    assert set(page.correlations) == {"inside quotes", "inside brackets", "position in line"}
    with pytest.raises(ValueError, match="unit must be in \\[0, 11\\].*got 12"):
        inspect_text(model, vocab, TEXT, unit=12)
    with pytest.raises(ValueError, match="layer must be in \\[0, 0\\].*got 1"):
        inspect_text(model, vocab, TEXT, layer=1)
    gru, vocab = model_and_vocab("gru")
    with pytest.raises(ValueError, match="has only h"):
        inspect_text(gru, vocab, TEXT, kind="c")


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.mark.skipif(chromium() is None, reason="no Chromium on PATH (Debian/Ubuntu: apt-get install -y chromium)")
def test_page_renders_in_headless_chromium(tmp_path):
    model, vocab = model_and_vocab()
    page = inspect_text(model, vocab, TEXT, kind="c")
    path = tmp_path / "page.html"
    path.write_text(page.html, encoding="utf-8")
    # --no-sandbox: CI containers run as root, where Chromium's sandbox refuses to start
    flags = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run(flags + ["--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=60).stdout
    assert dom.count('class="t"') == len(TEXT) * 4 and 'id="correlations"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=900,700", path.as_uri()],
                   capture_output=True, timeout=60)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]  # (H, W, 3) in [0, 1]
    # the coloured characters: pixels far from grey, in the red or the blue of the colour map
    saturated = (pixels.max(-1) - pixels.min(-1)) > 0.15
    assert saturated.mean() > 0.001, "the page rendered without coloured characters"


@pytest.mark.parametrize("kind", ["c", "h"])
def test_colours_are_scaled_per_unit_and_the_legend_says_so(kind):
    """The unit with the smallest values still reaches full colour: its own largest |value| is the
    scale (one unit counting to 100 must not leave the others pale), and the legend names it."""
    model, vocab = model_and_vocab()
    a = activations(model, vocab.encode(TEXT))[kind][:, 0]  # (T, U)
    quiet = int(np.abs(a).max(0).argmin())
    assert np.abs(a[:, quiet]).max() < 0.9 * np.abs(a).max()  # the case the shared scale got wrong
    page = inspect_text(model, vocab, TEXT, kind=kind, unit=quiet)
    main = page.html.split('<div class="text" id="main">')[1].split("</div>")[0]
    assert ",1.00)" in main  # the unit's largest value is full colour
    assert f"scaled per unit" in page.html and f"(unit {quiet}: &plusmn;{np.abs(a[:, quiet]).max():.3g})" in page.html
