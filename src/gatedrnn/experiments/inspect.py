"""What a language model's cells track: activations over a text, correlated with simple features.

    page = inspect_text(model, vocab, text, kind="c", layer=-1, unit=None)
    page.html                      # a self-contained HTML page (no scripts, fonts or images fetched)
    page.correlations              # feature -> [(unit, r)], strongest first

As in the studies of interpretable LSTM cells (Karpathy, Johnson and Fei-Fei 2015), each token of
the text is coloured by one unit's activation after reading it (red positive, blue negative), and
every unit of the chosen layer is correlated (Pearson) with features a reader can check by eye:
inside quotes, inside brackets, position in the line. ``model`` is any language model with an
``embedding`` and a gatedrnn ``rnn`` (``models.lm.LanguageModel``); ``vocab`` turns text into ids
and ids back into the pieces of text shown (``data.tokenizers.Vocabulary``).
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import torch

KINDS = ("c", "h")


@torch.no_grad()
def activations(model, ids) -> dict:
    """``{"h": (T, L, R), "c": (T, L, H) or None}``: the state after reading each token.

    The recurrent module runs one token per call: its sequence call returns only the last state,
    and the cell state of every step is what the page shows."""
    was_training = model.training
    model.eval()
    x = model.embedding(torch.as_tensor(np.asarray(ids, dtype=np.int64)).view(-1, 1))  # (T, 1, E)
    state, hs, cs = None, [], []
    for t in range(x.shape[0]):
        _, state = model.rnn(x[t : t + 1], state)
        if isinstance(state, tuple):
            hs.append(state[0][:, 0])  # (L, R)
            cs.append(state[1][:, 0])  # (L, H)
        else:
            hs.append(state[:, 0])
    model.train(was_training)
    return {"h": torch.stack(hs).float().numpy(), "c": torch.stack(cs).float().numpy() if cs else None}


QUOTES = "\"'`"
OPEN, CLOSE = "([{", ")]}"


def text_features(pieces: list[str]) -> dict[str, np.ndarray]:
    """Per token, after reading it: inside quotes (0/1), inside brackets (0/1), column in the line.

    Quotes toggle per kind (a ``'`` inside ``"..."`` does not close it); brackets count depth."""
    quote, depth, column = None, 0, 0
    feats = {"inside quotes": [], "inside brackets": [], "position in line": []}
    for piece in pieces:
        for ch in piece:
            if quote is not None:
                if ch == quote:
                    quote = None
            elif ch in QUOTES:
                quote = ch
            elif ch in OPEN:
                depth += 1
            elif ch in CLOSE:
                depth = max(0, depth - 1)
            column = 0 if ch == "\n" else column + 1
        feats["inside quotes"].append(float(quote is not None))
        feats["inside brackets"].append(float(depth > 0))
        feats["position in line"].append(float(column))
    return {k: np.array(v) for k, v in feats.items()}


def correlate(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``acts`` ``(T, U)`` with ``feature`` ``(T,)``; 0 where either is constant."""
    a = acts - acts.mean(0)
    f = feature - feature.mean()
    denom = np.sqrt((a * a).sum(0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(0) / denom
    return np.where(denom > 0, r, 0.0)


def top_units(acts: np.ndarray, features: dict, top: int = 5) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for name, feature in features.items():
        r = correlate(acts, feature)
        order = np.argsort(-np.abs(r))[:top]
        out[name] = [(int(u), float(r[u])) for u in order]
    return out


@dataclass
class Inspection:
    pieces: list  # the text of each token as shown
    kind: str
    layer: int
    unit: int
    values: np.ndarray  # (T,) the chosen unit's activation
    correlations: dict  # feature -> [(unit, r)]
    unit_values: dict = field(default_factory=dict)  # unit -> (T,), for the units shown
    html: str = ""


def _colour(v: float, scale: float) -> str:
    a = 0.0 if scale == 0 else min(1.0, abs(v) / scale)
    rgb = "214,39,40" if v > 0 else "31,119,180"
    return f"rgba({rgb},{a:.2f})"


def _render(pieces, values, scale) -> str:
    spans = []
    for piece, v in zip(pieces, values):
        shown = html.escape(piece.replace("\n", "\u21b5\n"))
        spans.append(f'<span class="t" style="background:{_colour(v, scale)}" title="{v:+.3f}">{shown}</span>')
    return "".join(spans)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; color: #222; }}
.text {{ font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.6;
         border: 1px solid #ddd; padding: 0.8em; }}
.small {{ font-size: 0.8em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: left; }}
.legend span {{ padding: 0 0.6em; }}
</style></head><body>
<h1>{title}</h1>
<p>{subtitle}</p>
<p class="legend">colour: <span style="background:{neg}">negative</span> <span style="background:{pos}">positive</span>,
scaled per unit to its largest |value| over this text (unit {unit}: &plusmn;{scale:.3g}); hover a character
for its value</p>
<div class="text" id="main">{main}</div>
<h2>Units most correlated with simple features</h2>
<p>Pearson r over this text, {kind} of layer {layer}, every unit.</p>
<table id="correlations"><tr><th>feature</th><th>unit</th><th>r</th></tr>
{rows}
</table>
{details}
</body></html>
"""


def inspect_text(model, vocab, text: str, kind: str = "c", layer: int = -1, unit: int | None = None,
                 top: int = 5, title: str = "") -> Inspection:
    """Run ``model`` over ``text`` and build the page; ``unit=None`` picks the unit most correlated
    with any feature."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not text:
        raise ValueError("text is empty: expected at least one token to inspect")
    ids = vocab.encode(text)
    decoder = vocab.decoder()
    pieces = [decoder(int(i)) for i in ids]
    acts = activations(model, ids)
    if acts[kind] is None:
        raise ValueError(f"kind 'c' needs a cell with a cell state; {model.rnn.cell.name} has only h (use --kind h)")
    layers = acts[kind].shape[1]
    if not -layers <= layer < layers:
        raise ValueError(f"layer must be in [0, {layers - 1}] (or negative from the top), got {layer}")
    layer %= layers
    a = acts[kind][:, layer]  # (T, U)
    features = text_features(pieces)
    correlations = top_units(a, features, top)
    if unit is None:
        unit = max((u for rows in correlations.values() for u in rows), key=lambda ur: abs(ur[1]))[0]
    if not 0 <= unit < a.shape[1]:
        raise ValueError(f"unit must be in [0, {a.shape[1] - 1}] for {kind} of layer {layer}, got {unit}")
    # each unit on its own scale, its largest |value| over the text: c is unbounded, and one unit
    # counting to 100 would leave every other unit pale on a scale shared by all
    def scale(u):
        return float(np.abs(a[:, u]).max()) or 1.0

    cell_name = getattr(getattr(model.rnn, "cell", None), "name", "recurrent")
    title = title or f"{cell_name}: {kind} of layer {layer}, unit {unit}"
    rows, details, shown = [], [], {unit: a[:, unit]}
    for feat, units in correlations.items():
        for u, r in units:
            rows.append(f"<tr><td>{html.escape(feat)}</td><td>{u}</td><td>{r:+.3f}</td></tr>")
        best = units[0][0]
        shown[best] = a[:, best]
        details.append(f"<h3>{html.escape(feat)}: unit {best} (r = {units[0][1]:+.3f}, scale &plusmn;{scale(best):.3g})"
                       f'</h3><div class="text small">{_render(pieces, a[:, best], scale(best))}</div>')
    page = PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(f"{len(pieces)} tokens, {a.shape[1]} units of {kind} in layer {layer} "
                             f"of {layers}; each token coloured by unit {unit}'s value after reading it."),
        neg=_colour(-1, 1), pos=_colour(1, 1), unit=unit, scale=scale(unit), main=_render(pieces, a[:, unit], scale(unit)),
        kind=kind, layer=layer, rows="\n".join(rows), details="\n".join(details))
    return Inspection(pieces, kind, layer, unit, a[:, unit], correlations, shown, page)


__all__ = ["Inspection", "inspect_text", "activations", "text_features", "correlate", "top_units", "KINDS"]
