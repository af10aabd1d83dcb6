"""swarmnet.data: corpora that ship in packages, byte-level shards and deterministic batches.

* **load_corpus, register_corpus, corpus_names (corpus.py)**: ``kjv``, ``shakespeare``, or your own.
* **DataConfig, TextData, ShardSampler (text.py)**: train/validation split, per-peer shards, batches.
"""

from swarmnet.data.corpus import corpus_names, load_corpus, register_corpus
from swarmnet.data.text import VOCAB_SIZE, DataConfig, ShardSampler, TextData

__all__ = ["VOCAB_SIZE", "DataConfig", "ShardSampler", "TextData", "corpus_names", "load_corpus", "register_corpus"]
