"""Sampling text from a language model, one token at a time, as a generator."""
from __future__ import annotations

import math
from typing import Iterator

import torch

from ..data.tokenizers import Vocabulary


@torch.no_grad()
def generate(model, vocab: Vocabulary, prompt: str = "", length: int = 200, temperature: float = 1.0,
             top_k: int = 0, seed: int | None = None, device=None) -> Iterator[str]:
    """Yield the text of each sampled token (the prompt itself is not yielded).

    ``model`` is a ``LanguageModel`` and ``vocab`` its ``Vocabulary``; ``length`` tokens are
    drawn, one ``model.step`` each, after the prompt has been read in one sequence call (no
    prompt: after a line break); ``seed`` makes the sample repeatable (``None``: a fresh seed);
    ``device`` is the model's by default. ``Run.sample`` joins these pieces after the prompt.
    ``temperature`` divides the logits (0 picks the most likely token); ``top_k > 0`` samples
    among the ``k`` most likely tokens only. Characters (or words) of the prompt outside the
    vocabulary raise ``ValueError``; at byte level every prompt is valid.
    """
    if length < 0:
        raise ValueError(f"length must not be negative, got {length}")
    if not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite number (0 for the most likely token), got {temperature}")
    if temperature < 0:
        raise ValueError(f"temperature must not be negative, got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must not be negative, got {top_k}")
    device = device or next(model.parameters()).device
    ids = vocab.encode(prompt, strict=True).tolist() if prompt else []
    if not ids:
        ids = [vocab.default_start()]
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else torch.seed())
    was_training = model.training
    model.eval()
    decode = vocab.decoder()
    try:
        prefix = torch.tensor(ids, dtype=torch.long, device=device).unsqueeze(1)  # (T, 1)
        state = None
        if len(ids) > 1:
            _, state = model(prefix[:-1], state)  # the prompt in one sequence call
        token = prefix[-1]  # (1,)
        # a character <unk> never occurs in training text, only stands for unseen characters
        banned = vocab.unk if vocab.level == "char" else None
        for _ in range(length):
            logits, state = model.step(token, state)  # (1, V)
            logits = logits[0].float()
            if banned is not None:
                logits[banned] = float("-inf")
            if temperature == 0:
                nxt = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k and top_k < logits.numel():
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            text = decode(nxt)
            if text:
                yield text
            token = torch.tensor([nxt], device=device)
        tail = decode.flush()
        if tail:
            yield tail
    finally:
        model.train(was_training)
