"""A trained run from Python: load it, then encode, sample and score text with it.

    import gatedrnn

    run = gatedrnn.load("runs/20261123-140847")          # a run folder, or a checkpoint file
    print(run.sample("def ", length=200, seed=1))        # the same text as `gatedrnn sample`
    print(run.score(open("notes.txt").read()))           # the same figures as `gatedrnn eval --data`
    logits, state = run.model(run.encode("def f(x):").unsqueeze(1))   # (T, 1, V)

``gatedrnn sample`` and ``gatedrnn eval`` call the methods here, so the command line and Python
give the same results for the same arguments.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..data import Vocabulary
from ..data.corpora import clean_text
from ..models.lm import LanguageModel, LMConfig
from .config import TrainConfig
from .evaluate import evaluate
from .loop import load_model
from .sampling import generate


@dataclass(frozen=True)
class RunConfig:
    """The settings a run was trained with: ``train`` (a ``TrainConfig``: data, batch, optimizer,
    schedule, budget) and ``model`` (an ``LMConfig``: cell, sizes, options)."""

    train: TrainConfig
    model: LMConfig

    def to_dict(self) -> dict:
        """Both configs as plain types: ``{"train": {...}, "model": {...}}``."""
        return {"train": self.train.to_dict(), "model": self.model.to_dict()}


class Run:
    """A trained language model with its vocabulary and settings, ready to use.

    Made by :func:`load`. Attributes:

    - ``model``: the :class:`~gatedrnn.models.lm.LanguageModel` (an ``nn.Module``, in eval mode):
      ``logits, state = run.model(tokens, state)`` with ``tokens`` ``(T, B)`` of ids, ``logits``
      ``(T, B, V)``; ``run.model.step(token, state)`` for one token per stream.
    - ``vocab``: the :class:`~gatedrnn.data.Vocabulary` (``level`` is ``char``, ``word`` or ``byte``).
    - ``config``: a :class:`RunConfig` (``config.train``, ``config.model``).
    - ``step``: the optimizer steps the checkpoint had taken; ``path``: the checkpoint file;
      ``corpus``: what the run trained on (name, level, sizes, SHA-256), as a dict.
    """

    def __init__(self, model: LanguageModel, vocab: Vocabulary, config: RunConfig, step: int = 0, path=None,
                 corpus: dict | None = None):
        self.model, self.vocab, self.config = model, vocab, config
        self.step, self.path = int(step), Path(path) if path is not None else None
        self.corpus = dict(corpus or {})

    def __repr__(self) -> str:
        m = self.config.model
        return (f"Run({str(self.path)!r}, {m.cell} {m.hidden_size} x {m.num_layers}, {self.vocab.level} level, "
                f"{len(self.vocab)} tokens, step {self.step})")

    @property
    def device(self) -> torch.device:
        """Where the model's weights are."""
        return next(self.model.parameters()).device

    # -- text <-> token ids ---------------------------------------------------------------
    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` as a ``(T,)`` ``torch.long`` tensor on the model's device.

        Characters (or words) the run never saw in training become ``<unk>``; at byte level every
        text is known. ``run.encode(text).unsqueeze(1)`` is the ``(T, 1)`` input of ``run.model``.
        """
        ids = self.vocab.encode(self._clean(text))
        return torch.from_numpy(ids.astype(np.int64)).to(self.device)

    def _clean(self, text):
        """As a text file is read for ``--data``: bytes stay as they are at byte level."""
        if self.vocab.level == "byte" or not isinstance(text, str):
            return text
        return clean_text(text)

    def decode(self, ids) -> str:
        """The text of token ids (a tensor, array or list of ints): the inverse of :meth:`encode`
        for known tokens. At word level each word is followed by a space and ``<eos>`` is a line break."""
        if torch.is_tensor(ids):
            ids = ids.reshape(-1).tolist()
        return self.vocab.decode([int(i) for i in ids])

    # -- sampling ---------------------------------------------------------------------------
    def stream(self, prompt: str = "", length: int = 500, temperature: float = 0.8, top_k: int = 0,
               seed: int | None = None) -> Iterator[str]:
        """The text of :meth:`sample` in pieces as they are generated: the prompt first, then the
        text of each new token (``length``, ``temperature``, ``top_k`` and ``seed`` as there).
        A prompt outside the vocabulary raises here, before any piece."""
        pieces = generate(self.model, self.vocab, prompt, length, temperature, top_k, seed, device=self.device)
        first = next(pieces, "")  # argument and prompt errors are raised by the first step
        return itertools.chain([prompt + first], pieces)

    def sample(self, prompt: str = "", length: int = 500, temperature: float = 0.8, top_k: int = 0,
               seed: int | None = None) -> str:
        """``prompt`` followed by ``length`` sampled tokens, as one string.

        The same text as ``gatedrnn sample RUN --prompt ... --length ... --temperature ... --top-k
        ... --seed ...`` prints (less its final line break). ``temperature`` divides the logits
        (0 always takes the most likely token; lower is more conservative, higher more varied);
        ``top_k > 0`` samples among the ``k`` most likely tokens only; a ``seed`` repeats a sample,
        ``None`` draws a fresh one. Without a prompt the sample starts after a line break. Raises
        ``ValueError`` for negative arguments and for characters (or words) of the prompt outside
        the vocabulary.

        >>> run.sample("def ", length=40, temperature=0.5, seed=1)   # doctest: +SKIP
        'def __init__(self, name):\\n        self._name = name'
        """
        return "".join(self.stream(prompt, length, temperature, top_k, seed))

    # -- scoring ----------------------------------------------------------------------------
    def score(self, text: str, seq_len: int = 256, streams: int = 1) -> dict:
        """How well the model predicts ``text``: the figures of ``gatedrnn eval RUN --data FILE``.

        Returns a dict: ``loss`` (mean cross-entropy in nats per token, over every token after the
        first), ``bits_per_token`` (the same in bits: bits per character at char level), ``ppl``
        (perplexity, ``exp(loss)``), ``tokens`` (tokens predicted) and ``unknown_tokens`` (tokens
        outside the vocabulary, read as ``<unk>``). The state is carried through the whole text,
        ``seq_len`` tokens per forward call; ``streams > 1`` cuts it into that many pieces scored
        side by side (faster, slightly different: each piece starts from a zero state).
        """
        return self.score_tokens(self.vocab.encode(self._clean(text)), seq_len=seq_len, streams=streams)

    def score_tokens(self, tokens, seq_len: int = 256, streams: int = 1) -> dict:
        """:meth:`score` of ``tokens``, ids already encoded with this run's vocabulary (a 1-D
        array or tensor), ``seq_len`` and ``streams`` as there."""
        tokens = np.asarray(tokens.cpu() if torch.is_tensor(tokens) else tokens)
        if tokens.ndim != 1:
            raise ValueError(f"expected a 1-D sequence of token ids, got shape {tuple(tokens.shape)}")
        if len(tokens) < 2:
            raise ValueError(f"the text has {len(tokens)} token(s); scoring needs at least 2")
        result = evaluate(self.model, tokens, seq_len=seq_len, streams=streams, device=self.device)
        unknown = int((tokens == self.vocab.unk).sum()) if self.vocab.unk is not None else 0
        return {**result, "unknown_tokens": unknown}


def load(path, checkpoint: str = "best", device="cpu", *, allow_unverified: bool = False,
         check_memory: bool = True) -> Run:
    """A trained run, from its folder or one checkpoint file, ready to sample and score text.

    ``path`` is a run folder written by ``gatedrnn train`` (or ``Trainer``), or a ``.pt``
    checkpoint in one. In a folder, ``checkpoint`` picks ``"best"`` (the lowest validation loss,
    the default) or ``"latest"``, each falling back to the other. ``device`` is ``"cpu"``,
    ``"cuda"``, ``"cuda:N"`` or ``"auto"``. The checkpoint is read with ``weights_only=True``:
    loading never runs code from the file. A checkpoint without its SHA-256 digest is refused
    unless ``allow_unverified``; a model larger than the memory available is refused before it is
    built unless ``check_memory=False``. If the checkpoint asked for is damaged, the other one of
    the folder is used and a ``CheckpointFallback`` warning says so.

    Raises ``FileNotFoundError`` for a missing run and ``gatedrnn.training.CheckpointError`` (a
    ``ValueError``) for a file that is not a whole gatedrnn checkpoint.

    >>> run = gatedrnn.load("runs/20261123-140847")          # doctest: +SKIP
    >>> run.sample("def ", length=100, seed=1)               # doctest: +SKIP
    >>> run.score("for i in range(10):\\n    print(i)\\n")   # doctest: +SKIP
    {'loss': 1.21, 'ppl': 3.35, 'bits_per_token': 1.74, 'tokens': 33, 'unknown_tokens': 0}
    """
    if checkpoint not in ("best", "latest"):
        raise ValueError(f"checkpoint must be 'best' or 'latest', got {checkpoint!r}")
    model, vocab, ckpt = load_model(path, checkpoint, device, allow_unverified=allow_unverified,
                                    check_memory=check_memory)
    path = ckpt["path"]
    config = RunConfig(TrainConfig.from_dict(ckpt["train_config"]), LMConfig.from_dict(ckpt["model_config"]))
    return Run(model, vocab, config, step=ckpt["step"], path=path, corpus=ckpt.get("corpus"))
