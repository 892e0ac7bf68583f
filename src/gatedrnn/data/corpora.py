"""Text corpora for language modelling, read into train/valid/test token streams.

    corpus = load_corpus()                       # the built-in: this Python's standard library
    corpus = load_corpus("data/ptb")             # PTB, WikiText, train/valid/test.txt, enwik8
    corpus = load_corpus("notes.txt", "word")    # one text file, split 95/2.5/2.5 in stripes

The built-in corpus needs no download: the ``.py`` files of the running interpreter's standard
library (tests and site-packages left out), in sorted order, shuffled with a fixed seed and cut at
a fixed size, so that it is the same on every machine with the same Python. Its description
(Python version, file count, size, SHA-256 of the text) is recorded in each run.

Every error a user can cause is a ``ValueError`` or ``FileNotFoundError`` whose message says what
was expected and what was found.
"""
from __future__ import annotations

import hashlib
import os
import random
import stat
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .tokenizers import LEVELS, Vocabulary

#: the built-in corpus: characters kept from the standard library, and its split (enwik8's too)
STDLIB_CAP = 3_000_000
STDLIB_SEED = 1234
SPLIT = (0.90, 0.05, 0.05)
SPLITS = ("train", "valid", "test")
#: a text file given by the user is split 95/2.5/2.5: a user's text is often small, and a model
#: that reads it many times gains more from the twentieth held out than the validation figure
#: loses (benchmarks/RESULTS.md, "A user's text split 95/2.5/2.5": lower held-out loss on a small
#: text in every run, higher on one made of near-copies); a run made before keeps its 90/5/5
#: (``saved_split``)
FILE_SPLIT = (0.95, 0.025, 0.025)
#: a text file given by the user is cut into stripes of at least this many characters (bytes),
#: at most ``MAX_STRIPES``, and each stripe split as ``FILE_SPLIT``: the held-out splits are
#: spread over the whole text instead of being its last pages (see ``stripe_count``)
STRIPE_MIN = 50_000
MAX_STRIPES = 10
EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}

#: directory layouts: name, (train, valid, test) file names, the level they are made for
LAYOUTS = (
    ("ptb-char", ("ptb.char.train.txt", "ptb.char.valid.txt", "ptb.char.test.txt"), "char"),
    ("ptb", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"), "word"),
    ("wikitext", ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"), "word"),
    ("wikitext-raw", ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"), "char"),
    ("plain", ("train.txt", "valid.txt", "test.txt"), "char"),
)


@dataclass
class Corpus:
    """Three token streams and the vocabulary that made them.

    ``corpus["train"]``, ``corpus["valid"]``, ``corpus["test"]`` are 1-D arrays of token ids;
    ``vocab`` is the ``Vocabulary`` built from the training split (or given to ``load_corpus``);
    ``description`` says where the text came from; ``summary()`` is one line for people.
    """

    vocab: Vocabulary
    splits: dict  # "train"/"valid"/"test" -> 1-D integer array
    description: dict = field(default_factory=dict)  # JSON-able: where the text came from

    @property
    def level(self) -> str:
        return self.vocab.level

    def __getitem__(self, split: str) -> np.ndarray:
        if split not in self.splits:
            raise ValueError(f"split must be one of {', '.join(self.splits)}, got {split!r}")
        return self.splits[split]

    def summary(self) -> str:
        """One line: name, level, vocabulary size and tokens per split."""
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return f"{self.description.get('name', 'corpus')} at {self.level} level: {len(self.vocab):,} tokens in the vocabulary; {sizes} tokens"


# -- the built-in corpus --------------------------------------------------------------------
def stdlib_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The standard library's ``.py`` files in a fixed order (sorted by relative path)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"the standard library was expected at {root}, found no directory there")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith("test_"))
        for name in filenames:
            if name.endswith(".py") and not name.startswith("test_"):
                files.append(Path(dirpath, name))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def stdlib_text(cap: int = STDLIB_CAP, root=None) -> tuple[str, dict]:
    """The built-in corpus text (at most ``cap`` characters) and its description.

    The ``.py`` files of the standard library at ``root`` (the running Python's by default),
    tests left out, in a fixed shuffled order, cut at ``cap``: the same text on every machine
    with the same Python. The description names the Python version and the text's SHA-256.
    """
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = stdlib_files(root)
    # a fixed shuffle so the cut keeps every part of the library, not only the first letters
    random.Random(STDLIB_SEED).shuffle(files)
    parts, size, used = [], 0, 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a handful of files use other encodings; leaving them out keeps the text UTF-8
        text = text.replace("\r\n", "\n")
        if size + len(text) + 1 > cap:
            continue
        parts.append(text)
        size += len(text) + 1
        used += 1
    text = "\n".join(parts) + "\n"
    if not parts:
        raise ValueError(f"no readable .py files under {root} (expected the standard library there)")
    description = {
        "name": "python-stdlib", "source": "builtin", "root": str(root),
        "python": sys.version.split()[0], "files": used, "files_found": len(files),
        "cap": cap, "seed": STDLIB_SEED, "chars": len(text),
        "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }
    return text, description


# -- files and directories ------------------------------------------------------------------
def special_kind(path: Path) -> str | None:
    """What ``path`` is if it is neither a regular file nor a folder (a FIFO, a device, a socket):
    reading one would block forever or never end (``/dev/zero``)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    for test, name in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_file(path: Path, level: str):
    """The contents of ``path`` as ``str`` (char/word) or ``bytes`` (byte), checked."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ValueError(f"expected a text file, found a directory: {path}")
    kind = special_kind(path)
    if kind:
        raise ValueError(f"expected a regular text file, found {kind}: {path} (save the text to a file first)")
    raw = path.read_bytes()
    if not raw:
        raise ValueError(f"{path} is empty (expected text)")
    if raw[:4] == b"PK\x03\x04":
        raise ValueError(f"{path} is a zip archive (expected text): unzip it first")
    if level == "byte":
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
                         f"read it at --level byte, or convert it to UTF-8") from None
    return clean_text(text)


def clean_text(text: str) -> str:
    """Text as every file is read: a leading byte-order mark dropped, Windows line ends as ``\\n``."""
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


def ptb_char_text(text: str) -> str:
    """PTB's character files spell each symbol with spaces and ``_`` for a space: undo that."""
    return "\n".join(line.replace(" ", "").replace("_", " ").strip() for line in text.split("\n"))


def split_points(data, fractions=SPLIT, snap: bool = False) -> list:
    """Cut ``data`` (str or bytes) into consecutive parts of the given fractions.

    ``snap`` moves each cut to the next whitespace so no word is cut in two.
    """
    n = len(data)
    cuts = [0]
    acc = 0.0
    for f in fractions[:-1]:
        acc += f
        c = int(round(n * acc))
        if snap:
            while c < n and not data[c].isspace():
                c += 1
        cuts.append(max(c, cuts[-1]))
    cuts.append(n)
    return [data[a:b] for a, b in zip(cuts, cuts[1:])]


def stripe_count(n: int) -> int:
    """How many stripes a text file of ``n`` characters (bytes) is split in: one below
    ``2 * STRIPE_MIN`` (the text's last pages held out, as before), else up to ``MAX_STRIPES``.

    A text's last pages are often unlike the rest (a change log after a reference, an index, one
    module's near-identical docstrings): held out whole, they leave validation unlike what the
    model trains on, and keep from training the part of the text a user's next text most
    resembles. Measured on such texts (benchmarks/RESULTS.md, "The first hour"), the last tenth
    held out cost more than any setting of the model gained.
    """
    return max(1, min(MAX_STRIPES, n // STRIPE_MIN))


def striped_split(data, stripes: int, fractions=SPLIT, snap: bool = False) -> list:
    """``split_points`` applied to each of ``stripes`` consecutive, equal stripes of ``data``,
    the parts of one name joined in order: ``stripes == 1`` is ``split_points(data)``."""
    n = len(data)
    cuts = [0]
    for k in range(1, stripes):
        c = n * k // stripes
        if snap:
            while c < n and not data[c].isspace():
                c += 1
        cuts.append(max(c, cuts[-1]))
    cuts.append(n)
    pieces = [split_points(data[a:b], fractions, snap) for a, b in zip(cuts, cuts[1:])]
    return [data[:0].join(p[i] for p in pieces) for i in range(len(fractions))]


def saved_split(description: dict) -> dict:
    """How to split a run's text file again (resuming, evaluating), as ``load_corpus``'s keyword
    arguments: the ``stripes`` and ``split`` its corpus ``description`` records (1 stripe for a
    text file split before stripes were recorded, 90/5/5 for one split before ``FILE_SPLIT``);
    nothing for anything but a text file."""
    description = description or {}
    if description.get("layout") != "file":
        return {}
    return {"stripes": int(description.get("stripes", 1)), "split": tuple(description.get("split", SPLIT))}


def detect_layout(directory: Path, level: str | None):
    """The layout of a corpus directory: ``(name, paths, level)``."""
    found = []
    for name, files, made_for in LAYOUTS:
        paths = [directory / f for f in files]
        if paths[0].is_file() and paths[1].is_file():
            found.append((name, [p if p.is_file() else None for p in paths], made_for))
    if (directory / "enwik8").is_file():
        found.append(("enwik8", [directory / "enwik8"], "byte"))
    if not found:
        present = sorted(p.name for p in directory.iterdir())
        shown = ", ".join(present[:6]) + (f" and {len(present) - 6} more" if len(present) > 6 else "")
        raise ValueError(
            f"{directory} has no known corpus layout: expected ptb.train.txt/ptb.valid.txt/ptb.test.txt, "
            f"ptb.char.*.txt, wiki.train.tokens/..., train.txt/valid.txt/test.txt or enwik8; "
            f"found {shown or 'an empty directory'}")
    if level is not None:
        for entry in found:
            if entry[2] == level:
                return entry
    return found[0]


def load_corpus(path=None, level: str | None = None, *, vocab: Vocabulary | None = None,
                cap: int = STDLIB_CAP, stripes: int | None = None, split=None) -> Corpus:
    """The corpus at ``path`` (None: the built-in one) at ``level`` (None: the layout's own).

    With ``vocab`` the text is encoded with that vocabulary (evaluating a trained model);
    otherwise the vocabulary is built from the training split. ``path`` is a text file (cut
    into train, valid and test), a folder in a known layout (PTB, WikiText,
    ``train.txt``/``valid.txt``/``test.txt``, enwik8) or ``None`` for the built-in corpus, of
    which ``cap`` characters are read. A text file is split by the fractions ``split`` (None:
    ``FILE_SPLIT``, 95/2.5/2.5) in each of ``stripes`` stripes (None: ``stripe_count`` of its
    length); a run records both, and a resumed run or an evaluation passes them back
    (``saved_split``), so a text split before a rule changed stays split as it was. enwik8 and
    the built-in corpus keep their last tenth held out (90/5/5), and a folder its files: asked for
    ``stripes`` or ``split``, they raise ``ValueError``.
    """
    if level is not None and level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if vocab is not None:
        if level is not None and level != vocab.level:
            raise ValueError(f"the vocabulary is at {vocab.level} level, but level {level!r} was asked for")
        level = vocab.level
    def fixed_split(name):  # a corpus whose split is its own: stripes and fractions are for a text file
        if stripes is not None or split is not None:
            raise ValueError(f"stripes and split apply to a text file; {name} keeps its own split, got "
                             f"stripes={stripes!r}, split={split!r}")

    if path is None or path == "":
        fixed_split("the built-in corpus")
        level = level or "char"
        text, description = stdlib_text(cap)
        data = text.encode("utf-8") if level == "byte" else text
        parts = split_points(data, snap=level == "word")
        return _encode(parts, level, vocab, description)
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    kind = special_kind(path)
    if kind:
        raise ValueError(f"expected a text file or a corpus folder, found {kind}: {path} (save the text to a file "
                         f"first)")
    if path.is_file():
        enwik8 = path.name == "enwik8"
        level = level or ("byte" if enwik8 else "char")
        if enwik8:
            fixed_split("enwik8")
            stripes, split = 1, SPLIT  # the benchmark's own split: 90M/5M/5M
        data = read_file(path, level)
        if stripes is None:
            stripes = stripe_count(len(data))
        if not isinstance(stripes, int) or stripes < 1:
            raise ValueError(f"stripes must be a positive integer, got {stripes!r}")
        split = tuple(split or FILE_SPLIT)
        if len(split) != 3 or min(split) <= 0 or abs(sum(split) - 1) > 1e-9:
            raise ValueError(f"split must be three positive fractions (train, valid, test) summing to 1, got "
                             f"{list(split)}")
        parts = striped_split(data, stripes, split, snap=level == "word")
        description = {"name": "enwik8" if enwik8 else path.name, "source": str(path.resolve()),
                       "layout": "enwik8" if enwik8 else "file", "split": list(split), "stripes": stripes}
        return _encode(parts, level, vocab, description)
    fixed_split(f"the folder {path}")
    layout, paths, made_for = detect_layout(path, level)
    level = level or made_for
    description = {"name": path.name or str(path), "source": str(path.resolve()), "layout": layout}
    if layout == "enwik8":
        data = read_file(paths[0], level)
        description["split"] = list(SPLIT)
        return _encode(split_points(data, snap=level == "word"), level, vocab, description)
    parts = []
    for p in paths:
        if p is None:
            parts.append(b"" if level == "byte" else "")
            continue
        data = read_file(p, level)
        parts.append(ptb_char_text(data) if layout == "ptb-char" and level != "byte" else data)
    return _encode(parts, level, vocab, description)


def _encode(parts, level, vocab, description) -> Corpus:
    if vocab is None:
        if not parts[0]:
            raise ValueError(f"the training split of {description.get('name')} is empty (expected text)")
        vocab = Vocabulary.build(level, parts[0])
    splits = {name: vocab.encode(part) for name, part in zip(SPLITS, parts)}
    # what the model reads, whatever the source: a resumed run checks it is reading the same tokens
    digest = hashlib.sha256()
    for name in SPLITS:
        digest.update(f"{name}:{len(splits[name])}:".encode())
        digest.update(np.ascontiguousarray(splits[name], dtype=np.int64).tobytes())
    description = {**description, "level": level, "tokens_sha256": digest.hexdigest()}
    return Corpus(vocab=vocab, splits=splits, description=description)


def encode_file(path, vocab: Vocabulary) -> np.ndarray:
    """Every token of the text file at ``path`` with a trained model's ``vocab`` (unknown -> ``<unk>``).

    The file is read as ``gatedrnn train --data`` reads it (UTF-8, a byte-order mark dropped,
    Windows line ends as ``\\n``; raw bytes at byte level); returns a 1-D array of ids.
    """
    path = Path(path).expanduser()
    data = read_file(path, vocab.level)
    if vocab.level == "char" and path.name.startswith("ptb.char."):
        data = ptb_char_text(data)
    return vocab.encode(data)
