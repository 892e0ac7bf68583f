"""Vocabularies for the three levels a language model reads: ``char``, ``word`` and ``byte``.

A ``Vocabulary`` turns text into token ids and back. It is stored in checkpoints as plain JSON
types (``to_dict``/``from_dict``) so that loading one never has to unpickle an object.

- ``char``: the characters seen in the training split, sorted, then ``<unk>`` for the rest.
- ``word``: the PTB setup: whitespace-separated words, ``<eos>`` at the end of every line, the
  words of the training split in order of first appearance, and ``<unk>`` for the rest.
- ``byte``: the 256 byte values; every file is readable at this level.
"""
from __future__ import annotations

import codecs

import numpy as np

LEVELS = ("char", "word", "byte")
UNK, EOS = "<unk>", "<eos>"


def smallest_dtype(vocab_size: int):
    """The narrowest unsigned integer type that holds ids below ``vocab_size`` (enwik8: 100 MB)."""
    if vocab_size <= 1 << 8:
        return np.uint8
    if vocab_size <= 1 << 16:
        return np.uint16
    return np.int64


def split_words(text: str) -> list[str]:
    """PTB-style word tokens: whitespace-separated words, ``<eos>`` after every line."""
    words = []
    for line in text.split("\n"):
        words.extend(line.split())
        words.append(EOS)
    if text.endswith("\n"):
        words.pop()  # the last newline ends the last line; it does not start an empty one
    return words


class Vocabulary:
    """Token ids for one level. ``tokens[i]`` is the string of id ``i`` (a byte's is its value)."""

    def __init__(self, level: str, tokens: list[str]):
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.level = level
        self.tokens = list(tokens) if level != "byte" else [chr(b) for b in range(256)]
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if level != "byte" and len(self.index) != len(self.tokens):
            raise ValueError(f"a {level} vocabulary must not repeat tokens: {len(self.tokens)} tokens, "
                             f"{len(self.index)} distinct")
        self.unk = self.index.get(UNK)
        self.dtype = smallest_dtype(len(self.tokens))

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and (self.level, self.tokens) == (other.level, other.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({self.level!r}, {len(self)} tokens)"

    # -- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, level: str, data) -> "Vocabulary":
        """The vocabulary at ``level`` (``char``, ``word`` or ``byte``) of a training split,
        ``data``: ``str`` for char/word, ``bytes`` for byte."""
        if level == "byte":
            return cls("byte", [])
        if level == "char":
            points = np.unique(_code_points(data))
            return cls("char", [chr(p) for p in points] + [UNK])
        seen = dict.fromkeys(split_words(data))  # first appearance order, as the PTB examples do
        seen.pop(UNK, None)
        tokens = [t for t in seen if t != EOS]
        return cls("word", [EOS] + tokens + [UNK])

    # -- JSON-able form for checkpoints ---------------------------------------------------
    def to_dict(self) -> dict:
        """The vocabulary as plain types (checkpoints hold it so; ``from_dict`` reads it back)."""
        return {"level": self.level, "tokens": [] if self.level == "byte" else list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        """The vocabulary ``to_dict`` wrote, ``d``."""
        return cls(d["level"], d["tokens"])

    # -- text <-> ids ---------------------------------------------------------------------
    def encode(self, data, *, strict: bool = False) -> np.ndarray:
        """Token ids of ``data`` (``str``; ``bytes`` at byte level), unknown tokens -> ``<unk>``.

        With ``strict=True`` tokens outside the vocabulary raise ``ValueError`` instead.
        """
        if self.level == "byte":
            raw = data if isinstance(data, (bytes, bytearray)) else data.encode("utf-8")
            return np.frombuffer(bytes(raw), dtype=np.uint8).copy()
        if self.level == "char":
            points = _code_points(data)
            known = np.array(sorted(ord(t) for t in self.tokens if len(t) == 1), dtype=np.uint32)
            ids_of_known = np.array([self.index[chr(p)] for p in known], dtype=np.int64)
            pos = np.searchsorted(known, points)
            pos_clipped = np.minimum(pos, len(known) - 1)
            hit = known[pos_clipped] == points if len(known) else np.zeros(points.shape, bool)
            if strict and not hit.all():
                missing = sorted({chr(p) for p in points[~hit]})
                raise ValueError(f"characters outside the vocabulary: {_show(missing)} "
                                 f"(expected characters seen in training, {len(self) - 1} of them)")
            ids = np.where(hit, ids_of_known[pos_clipped] if len(known) else 0, self.unk)
            return ids.astype(self.dtype)
        words = split_words(data) if not strict else data.split()
        if strict:
            missing = sorted({w for w in words if w not in self.index})
            if missing:
                raise ValueError(f"words outside the vocabulary: {_show(missing)} "
                                 f"(expected words seen in training, {len(self)} of them)")
        unk = self.unk
        return np.fromiter((self.index.get(w, unk) for w in words), dtype=np.int64,
                           count=len(words)).astype(self.dtype)

    def decode(self, ids) -> str:
        """Text of ``ids`` (bytes that are not UTF-8 become U+FFFD)."""
        decoder = self.decoder()
        return "".join(decoder(int(i)) for i in ids) + decoder.flush()

    def decoder(self) -> "StreamDecoder":
        """A fresh decoder for streaming one token at a time."""
        return StreamDecoder(self)

    def default_start(self) -> int:
        """The token a prompt-less sample starts from: a line break in every level."""
        if self.level == "byte":
            return 10
        if self.level == "word":
            return self.index[EOS]
        return self.index.get("\n", 0)


class StreamDecoder:
    """id -> text, one token at a time; at byte level a character may wait for its next bytes."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.bytes = codecs.getincrementaldecoder("utf-8")(errors="replace") if vocab.level == "byte" else None

    def __call__(self, i: int) -> str:
        if self.bytes is not None:
            return self.bytes.decode(bytes([i]))
        token = self.vocab.tokens[i]
        if self.vocab.level == "word":
            return "\n" if token == EOS else token + " "
        return token

    def flush(self) -> str:
        return self.bytes.decode(b"", final=True) if self.bytes is not None else ""


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _show(items, limit=8) -> str:
    shown = ", ".join(repr(t) for t in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
