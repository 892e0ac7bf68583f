"""Data: text corpora, tokenizers and batching for language models (and synthetic tasks)."""
from .batching import StreamBatcher, eval_streams
from .corpora import Corpus, encode_file, load_corpus, stdlib_text
from .tokenizers import LEVELS, Vocabulary

__all__ = ["Corpus", "LEVELS", "StreamBatcher", "Vocabulary", "encode_file", "eval_streams", "load_corpus",
           "stdlib_text"]
