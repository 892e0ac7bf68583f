"""Corpora, vocabularies and stream batching: layouts, splits, levels, and the errors users meet."""
import numpy as np
import pytest
import torch

from gatedrnn.data import StreamBatcher, Vocabulary, load_corpus
from gatedrnn.data.corpora import (EXCLUDED_DIRS, FILE_SPLIT, MAX_STRIPES, SPLIT, STRIPE_MIN, saved_split, split_points,
                                   stdlib_files, stdlib_text, stripe_count, striped_split)
from gatedrnn.data.tokenizers import EOS, UNK, split_words

TEXT = "the cat sat on the mat\nthe dog ran\n" * 40


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


# -- the built-in corpus --------------------------------------------------------------------
def test_stdlib_corpus_is_deterministic_and_leaves_tests_out():
    a, da = stdlib_text(cap=60_000)
    b, db = stdlib_text(cap=60_000)
    assert a == b and da["sha256"] == db["sha256"]
    assert len(a) <= 60_000 and da["files"] > 0 and da["python"]
    for path in stdlib_files():
        assert not EXCLUDED_DIRS & set(path.parts[-4:-1]), path


def test_stdlib_corpus_splits_90_5_5_at_every_level():
    for level in ("char", "byte", "word"):
        c = load_corpus(None, level, cap=60_000)
        n = {k: len(v) for k, v in c.splits.items()}
        total = sum(n.values())
        if level != "word":  # word level cuts the text by characters, so its word counts vary
            assert abs(n["train"] / total - SPLIT[0]) < 1e-4, (level, n)
        assert n["valid"] > 0 and n["test"] > 0
        assert c.description["name"] == "python-stdlib" and c.description["level"] == level


# -- files and layouts ----------------------------------------------------------------------
def test_text_file_char_level_round_trips(tmp_path):
    c = load_corpus(write(tmp_path / "t.txt", TEXT))
    joined = np.concatenate([c["train"], c["valid"], c["test"]])
    assert c.vocab.decode(joined) == TEXT
    assert c.vocab.tokens[-1] == UNK and c.level == "char"


def test_unseen_characters_map_to_unk_and_strict_encoding_refuses(tmp_path):
    vocab = Vocabulary.build("char", "abc")
    assert vocab.decode(vocab.encode("abz")) == "ab" + UNK
    with pytest.raises(ValueError, match="outside the vocabulary: 'z'"):
        vocab.encode("abz", strict=True)


def test_ptb_layout_word_level(tmp_path):
    write(tmp_path / "ptb.train.txt", " the cat <unk> sat \n the dog \n")
    write(tmp_path / "ptb.valid.txt", " the bird \n")
    write(tmp_path / "ptb.test.txt", " a cat \n")
    c = load_corpus(tmp_path)
    assert c.level == "word" and c.description["layout"] == "ptb"
    assert c.vocab.decode(c["train"]).split() == ["the", "cat", UNK, "sat", "the", "dog"]
    assert c.vocab.tokens[0] == EOS and c.vocab.tokens.count(UNK) == 1
    assert [c.vocab.tokens[i] for i in c["valid"]] == ["the", UNK, EOS]  # 'bird' is unseen


def test_ptb_char_files_are_respelled(tmp_path):
    write(tmp_path / "ptb.char.train.txt", "a _ c a t\nt h e _ d o g\n")
    write(tmp_path / "ptb.char.valid.txt", "a _ d o g\n")
    write(tmp_path / "ptb.char.test.txt", "c a t\n")
    c = load_corpus(tmp_path, "char")
    assert c.description["layout"] == "ptb-char"
    assert c.vocab.decode(c["train"]) == "a cat\nthe dog\n"


@pytest.mark.parametrize("names,layout,level", [
    (("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"), "wikitext", "word"),
    (("train.txt", "valid.txt", "test.txt"), "plain", "char"),
])
def test_directory_layouts(tmp_path, names, layout, level):
    for name in names:
        write(tmp_path / name, TEXT)
    c = load_corpus(tmp_path)
    assert (c.description["layout"], c.level) == (layout, level)
    assert len(c["test"]) > 0


def test_enwik8_is_read_as_bytes_and_split_90_5_5(tmp_path):
    data = bytes(range(256)) * 40
    write(tmp_path / "enwik8", data)
    for path in (tmp_path, tmp_path / "enwik8"):
        c = load_corpus(path)
        assert c.level == "byte" and c.description["name" if path.is_file() else "layout"] == "enwik8"
        assert [len(c[s]) for s in ("train", "valid", "test")] == [9216, 512, 512]  # 90/5/5 of 10240 bytes
        assert bytes(c["train"][:4].tolist()) == data[:4]


def region_text(regions: int, size: int) -> str:
    """``regions`` consecutive regions of ``size`` characters, each written in its own letter."""
    return "".join(chr(ord("a") + r) * size for r in range(regions))


@pytest.mark.parametrize("fractions", [SPLIT, FILE_SPLIT])
@pytest.mark.parametrize("stripes", [1, 3, MAX_STRIPES])
@pytest.mark.parametrize("snap", [False, True])
def test_striped_split_keeps_every_character_and_spreads_the_held_out_parts(stripes, snap, fractions):
    text = " ".join(f"w{i}" for i in range(40_000)) if snap else region_text(26, 1000)
    parts = striped_split(text, stripes, fractions, snap=snap)
    assert sum(map(len, parts)) == len(text)
    if stripes == 1:
        assert parts == split_points(text, fractions, snap=snap)
    for part, fraction in zip(parts, fractions):
        assert abs(len(part) / len(text) - fraction) < 0.01, (len(part), fraction)
    if snap:  # no word cut in two: every piece of every part is made of whole words
        words = set(text.split())
        assert all(w in words for part in parts for w in part.split()), "a word was cut"
    else:  # held-out characters come from every stripe: from regions across the whole text
        for part in parts[1:]:
            regions = sorted(ord(c) - ord("a") for c in set(part))
            assert len(regions) >= stripes and regions[0] < 26 / stripes and regions[-1] >= 25 - 26 / stripes, regions


def test_a_text_file_is_split_in_stripes_by_its_length(tmp_path):
    short = region_text(26, (2 * STRIPE_MIN - 1) // 26)
    c = load_corpus(write(tmp_path / "short.txt", short))
    assert c.description["stripes"] == stripe_count(len(short)) == 1
    # one stripe: the text's last pages held out, a twentieth of it (FILE_SPLIT), valid then test
    assert c.description["split"] == list(FILE_SPLIT) == [0.95, 0.025, 0.025]
    assert np.array_equal(c["valid"], c.vocab.encode(short[int(round(len(short) * 0.95)):int(round(len(short) * 0.975))]))
    text = region_text(26, 8000)  # 208,000 characters: 4 stripes
    path = write(tmp_path / "long.txt", text)
    c = load_corpus(path)
    assert c.description["stripes"] == stripe_count(len(text)) == 4
    held = "".join(split_points(text[k * 52_000:(k + 1) * 52_000], FILE_SPLIT)[1] for k in range(4))
    assert np.array_equal(c["valid"], c.vocab.encode(held))
    assert stripe_count(10**9) == MAX_STRIPES
    # a run made before stripes were recorded is read back as it was split: one stripe, 90/5/5;
    # one made before the split was recorded, 90/5/5 too
    for recorded in ({"layout": "file", "split": list(SPLIT)}, {"layout": "file"}):
        old = load_corpus(path, **saved_split(recorded))
        assert np.array_equal(old["test"], old.vocab.encode(split_points(text, SPLIT)[2]))
        assert old.description["split"] == list(SPLIT) and old.description["stripes"] == 1
    assert saved_split(c.description) == {"stripes": 4, "split": FILE_SPLIT} and saved_split({"layout": "ptb"}) == {}
    with pytest.raises(ValueError, match="stripes must be a positive integer, got 0"):
        load_corpus(path, stripes=0)
    for bad in ((0.9, 0.1), (0.9, 0.1, 0.0), (0.9, 0.1, 0.1)):
        with pytest.raises(ValueError, match=r"split must be three positive fractions \(train, valid, test\) summing "
                                             r"to 1, got \[0.9, 0.1"):
            load_corpus(path, split=bad)


@pytest.mark.parametrize("asked", [{"stripes": 2}, {"split": FILE_SPLIT}])
def test_a_corpus_with_its_own_split_refuses_stripes_and_fractions(tmp_path, asked):
    # the built-in corpus, enwik8 and a folder keep their split: asking for another is an error, not ignored
    (tmp_path / "enwik8").write_bytes(b"abcdefghij" * 100)
    folder = tmp_path / "f"
    folder.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        write(folder / name, "some words here\n" * 20)
    for path, name in ((None, "the built-in corpus"), (tmp_path / "enwik8", "enwik8"), (folder, "the folder")):
        with pytest.raises(ValueError, match=f"stripes and split apply to a text file; {name}"):
            load_corpus(path, **asked)


def test_byte_level_decodes_multibyte_characters_across_tokens():
    vocab = Vocabulary("byte", [])
    ids = vocab.encode("héllo ☃")
    decoder = vocab.decoder()
    assert "".join(decoder(int(i)) for i in ids) + decoder.flush() == "héllo ☃"


def test_vocabulary_survives_json_round_trip():
    import json

    for level, data in (("char", "abcab"), ("word", "a b\nc a\n"), ("byte", b"xy")):
        v = Vocabulary.build(level, data)
        assert Vocabulary.from_dict(json.loads(json.dumps(v.to_dict()))) == v


def test_split_words_is_ptb_style():
    assert split_words("a b\n\nc\n") == ["a", "b", EOS, EOS, "c", EOS]


# -- errors ---------------------------------------------------------------------------------
def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_corpus(tmp_path / "nope.txt")


def test_empty_file(tmp_path):
    with pytest.raises(ValueError, match="is empty"):
        load_corpus(write(tmp_path / "e.txt", ""))


def test_unknown_directory_layout_names_what_it_found(tmp_path):
    write(tmp_path / "notes.md", "x")
    with pytest.raises(ValueError, match=r"no known corpus layout: expected ptb\.train\.txt.*found notes\.md"):
        load_corpus(tmp_path)


def test_non_utf8_at_char_level_suggests_byte_level(tmp_path):
    path = write(tmp_path / "latin1.txt", "caf\xe9 " * 100, encoding="latin-1")
    for level in ("char", "word"):
        with pytest.raises(ValueError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\).*--level byte"):
            load_corpus(path, level)
    assert load_corpus(path, "byte").level == "byte"


def test_corpus_too_small_for_one_batch(tmp_path):
    c = load_corpus(write(tmp_path / "s.txt", "abcdefghij" * 10))
    with pytest.raises(ValueError, match=r"too small for one batch: it has 95 tokens.*needs 264"):
        StreamBatcher(c["train"], batch_size=8, seq_len=32)


# -- batching -------------------------------------------------------------------------------
def test_streams_continue_from_batch_to_batch_and_resume_at_the_same_place():
    tokens = np.arange(1000) % 251
    b = StreamBatcher(tokens.astype(np.uint8), batch_size=4, seq_len=10)
    x1, y1, _ = b.next()
    x2, _, _ = b.next()
    assert x1.shape == (10, 4) and torch.equal(y1[:-1], x1[1:])
    assert torch.equal(x2[0], y1[-1])  # row b of batch 2 continues row b of batch 1
    state = b.state_dict()
    x3, _, _ = b.next()
    c = StreamBatcher(tokens.astype(np.uint8), batch_size=4, seq_len=10)
    c.load_state_dict(state)
    assert torch.equal(c.next()[0], x3)


def test_streams_wrap_to_a_new_epoch():
    b = StreamBatcher(np.arange(100, dtype=np.uint8), batch_size=2, seq_len=20)  # streams of 50: 2 windows
    flags = [b.next()[2] for _ in range(3)]
    assert flags == [False, False, True] and b.epoch == 1


def test_rows_give_each_process_its_share():
    tokens = np.arange(400, dtype=np.uint16)
    whole = StreamBatcher(tokens, 4, 5).next()[0]
    halves = [StreamBatcher(tokens, 4, 5, rows=slice(r * 2, r * 2 + 2)).next()[0] for r in range(2)]
    assert torch.equal(torch.cat(halves, dim=1), whole)
