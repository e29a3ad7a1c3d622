"""Tokenisation for the language-modelling datasets: text in, int64 token ids out.

Four tokenisers share one small interface (``kind``, ``vocab_size``, ``encode``,
``decode``, ``describe``):

- ``byte``: the UTF-8 bytes themselves (vocabulary 256); needs no training, so nothing
  about it depends on the data split, and ``decode(encode(text)) == text`` for any text.
- ``char``: one id per character seen in the training text; id 0 stands for any
  character the training text lacks, so val/test never index outside the vocabulary.
- ``bpe``: byte-level BPE trained here with the ``tokenizers`` library on the training
  text only (no val/test statistics leak into the vocabulary).
- ``pretrained``: a Hugging Face tokenizer (e.g. GPT-2's) from a local directory, never
  from the network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

TOKENIZER_KINDS = ("byte", "char", "bpe", "pretrained")
# Encode long texts line by line, this many lines per call: whole-corpus strings would
# make one huge Rust allocation and trip transformers' max-length warning.
_LINES_PER_BATCH = 4096


class TextTokenizer(Protocol):
    kind: str
    vocab_size: int

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Sequence[int] | np.ndarray) -> str: ...

    def describe(self) -> dict[str, Any]: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens."""

    kind = "byte"
    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        # A model's sampled bytes need not be valid UTF-8; show those as U+FFFD.
        return bytes(np.asarray(ids, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")

    def describe(self) -> dict[str, Any]:
        return {"tokenizer": self.kind, "vocab_size": self.vocab_size}


class CharTokenizer:
    """Characters of the training text as tokens; id 0 is the unknown character."""

    kind = "char"
    unknown = "\ufffd"

    def __init__(self, alphabet: str) -> None:
        self.alphabet = "".join(sorted(set(alphabet)))
        self._code_points = _code_points(self.alphabet)
        self.vocab_size = len(self.alphabet) + 1

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        return cls(text)

    def encode(self, text: str) -> np.ndarray:
        points = _code_points(text)
        if len(self._code_points) == 0:
            return np.zeros(len(points), dtype=np.int64)
        index = np.searchsorted(self._code_points, points)
        clipped = np.minimum(index, len(self._code_points) - 1)
        known = (index < len(self._code_points)) & (self._code_points[clipped] == points)
        return np.where(known, index + 1, 0).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        table = self.unknown + self.alphabet
        return "".join(table[i] for i in np.asarray(ids).tolist())

    def describe(self) -> dict[str, Any]:
        return {"tokenizer": self.kind, "vocab_size": self.vocab_size, "alphabet": self.alphabet}


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) trained on the training text."""

    kind = "bpe"

    def __init__(self, backend: Any) -> None:
        self.backend = backend  # a tokenizers.Tokenizer
        self.vocab_size = int(backend.get_vocab_size())

    @classmethod
    def fit(cls, text: str, vocab_size: int) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        backend = Tokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(text.splitlines(keepends=True), trainer)
        return cls(backend)

    def encode(self, text: str) -> np.ndarray:
        pieces = [
            np.asarray(encoding.ids, dtype=np.int64)
            for batch in _line_batches(text)
            for encoding in self.backend.encode_batch(batch)
        ]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.backend.decode(np.asarray(ids).tolist())

    def describe(self) -> dict[str, Any]:
        return {"tokenizer": self.kind, "vocab_size": self.vocab_size}


class PretrainedTokenizer:
    """A Hugging Face tokenizer saved in a local directory (``local_files_only``)."""

    kind = "pretrained"

    def __init__(self, directory: str | Path) -> None:
        from transformers import AutoTokenizer

        self.directory = str(directory)
        self.backend = AutoTokenizer.from_pretrained(self.directory, local_files_only=True)
        self.vocab_size = len(self.backend)

    def encode(self, text: str) -> np.ndarray:
        pieces = [
            np.asarray(ids, dtype=np.int64)
            for batch in _line_batches(text)
            for ids in self.backend(batch, add_special_tokens=False, verbose=False)["input_ids"]
        ]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        return self.backend.decode(np.asarray(ids).tolist())

    def describe(self) -> dict[str, Any]:
        return {
            "tokenizer": self.kind,
            "vocab_size": self.vocab_size,
            "tokenizer_dir": self.directory,
        }


def build_tokenizer(
    kind: str, train_text: str, *, vocab_size: int = 1024, tokenizer_dir: str | None = None
) -> TextTokenizer:
    """The tokeniser ``kind``, fitted on ``train_text`` where it learns a vocabulary."""
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(train_text)
    if kind == "bpe":
        return BPETokenizer.fit(train_text, vocab_size)
    if kind == "pretrained":
        if tokenizer_dir is None:
            raise ValueError("tokenizer 'pretrained' needs tokenizer_dir (a local directory)")
        return PretrainedTokenizer(tokenizer_dir)
    raise ValueError(f"tokenizer = {kind!r} is not known; accepted: {list(TOKENIZER_KINDS)}")


def chunk(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``tokens`` into non-overlapping blocks of ``seq_len + 1``: returns (x, y).

    ``x = block[:-1]`` and ``y = block[1:]``. Blocks share no token, so dropping a sample
    (data sparsification) removes exactly its own tokens. The tail shorter than one block
    is dropped.
    """
    block = seq_len + 1
    n_blocks = len(tokens) // block
    blocks = np.asarray(tokens[: n_blocks * block], dtype=np.int64).reshape(n_blocks, block)
    return blocks[:, :-1], blocks[:, 1:]


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _line_batches(text: str) -> Iterator[list[str]]:
    lines = text.splitlines(keepends=True)
    for start in range(0, len(lines), _LINES_PER_BATCH):
        yield lines[start : start + _LINES_PER_BATCH]
