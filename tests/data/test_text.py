"""Tokenisers and chunking."""

from __future__ import annotations

import numpy as np
import pytest

from jmds_pipeline.data.text import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    PretrainedTokenizer,
    build_tokenizer,
    chunk,
)

SAMPLE = "Hello, wörld! ∑ λ → 日本語\n\n\tindent  and  spaces\r\nend"


def test_byte_tokenizer_round_trips_any_text() -> None:
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(SAMPLE)
    assert ids.dtype == np.int64 and ids.max() < 256
    assert len(ids) == len(SAMPLE.encode("utf-8"))
    assert tokenizer.decode(ids) == SAMPLE
    assert tokenizer.decode(tokenizer.encode("")) == ""


def test_byte_tokenizer_decodes_invalid_utf8_without_failing() -> None:
    assert ByteTokenizer().decode([0xE6, 0x97]) == "\ufffd"


def test_char_tokenizer_maps_unseen_characters_to_zero() -> None:
    tokenizer = CharTokenizer.fit("abcab")
    assert tokenizer.vocab_size == 4  # a, b, c + unknown
    assert tokenizer.encode("cab").tolist() == [3, 1, 2]
    assert tokenizer.encode("axb").tolist() == [1, 0, 2]
    assert tokenizer.decode(tokenizer.encode("axb")) == "a\ufffdb"
    assert tokenizer.decode(tokenizer.encode(SAMPLE)) != SAMPLE
    fitted = CharTokenizer.fit(SAMPLE)
    assert fitted.decode(fitted.encode(SAMPLE)) == SAMPLE
    assert CharTokenizer.fit("").encode("ab").tolist() == [0, 0]


def test_bpe_tokenizer_learns_merges_and_round_trips() -> None:
    text = "the cat sat on the mat; the cat ate the rat.\n" * 40
    tokenizer = BPETokenizer.fit(text, vocab_size=300)
    assert 256 < tokenizer.vocab_size <= 300
    ids = tokenizer.encode(text)
    assert len(ids) < len(text.encode("utf-8")) / 2  # merges compress the training text
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer.encode(SAMPLE)) == SAMPLE  # unseen bytes still work
    again = BPETokenizer.fit(text, vocab_size=300)
    assert np.array_equal(again.encode(SAMPLE), tokenizer.encode(SAMPLE))  # deterministic


def test_pretrained_tokenizer_loads_from_a_local_directory(tmp_path) -> None:
    from transformers import GPT2TokenizerFast

    trained = BPETokenizer.fit("hello world, the cat sat on the mat.\n" * 20, vocab_size=300)
    GPT2TokenizerFast(tokenizer_object=trained.backend).save_pretrained(tmp_path)
    tokenizer = build_tokenizer("pretrained", "", tokenizer_dir=str(tmp_path))
    assert isinstance(tokenizer, PretrainedTokenizer)
    text = "hello the mat\n\nzz"
    assert np.array_equal(tokenizer.encode(text), trained.encode(text))
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.describe()["tokenizer_dir"] == str(tmp_path)


def test_unknown_tokenizer_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"'words'.*accepted.*'byte'"):
        build_tokenizer("words", "")


def test_chunk_makes_non_overlapping_shifted_blocks() -> None:
    tokens = np.arange(23)
    x, y = chunk(tokens, seq_len=4)
    assert x.shape == (4, 4) and y.shape == (4, 4)  # 23 // 5 blocks, tail of 3 dropped
    assert x[0].tolist() == [0, 1, 2, 3] and y[0].tolist() == [1, 2, 3, 4]
    assert x[1].tolist() == [5, 6, 7, 8]  # the next block starts after the previous one
    assert chunk(np.arange(3), seq_len=4)[0].shape == (0, 4)
