"""Each dataset's option rules, its metadata, and the tokenisers' small interface."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from jmds_pipeline.data import load_dataset
from jmds_pipeline.data.builtin import DigitsOptions, MNIST1DOptions
from jmds_pipeline.data.language import PydocOptions, TextOptions
from jmds_pipeline.data.options import parse_options
from jmds_pipeline.data.text import BPETokenizer, ByteTokenizer, CharTokenizer, build_tokenizer


def _refused(cls: type, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape('ds: ' + message)}$"):
        parse_options(cls, options, owner="ds")


@pytest.mark.parametrize("cls", [DigitsOptions, PydocOptions])
def test_fractions_of_digits_and_pydoc(cls) -> None:
    _refused(
        cls, {"val_fraction": 1.0}, "option 'val_fraction' = 1.0; accepted: a number in [0, 1)"
    )
    _refused(
        cls, {"test_fraction": 0.0}, "option 'test_fraction' = 0.0; accepted: a number in (0, 1)"
    )
    parse_options(cls, {"val_fraction": 0.0, "test_fraction": 0.5}, owner="ds")


def test_mnist1d_options() -> None:
    _refused(
        MNIST1DOptions,
        {"val_fraction": 1.5},
        "option 'val_fraction' = 1.5; accepted: a number in [0, 1)",
    )
    _refused(
        MNIST1DOptions, {"num_samples": 9}, "option 'num_samples' = 9; accepted: an integer >= 10"
    )


def test_text_options() -> None:
    _refused(TextOptions, {"seq_len": 0}, "option 'seq_len' = 0; accepted: an integer >= 1")
    assert parse_options(TextOptions, {"seq_len": 1}, owner="ds").seq_len == 1
    _refused(
        TextOptions,
        {"tokenizer": "bpe", "vocab_size": 256},
        "option 'vocab_size' = 256; accepted: an integer >= 257",
    )
    parse_options(TextOptions, {"tokenizer": "bpe", "vocab_size": 257}, owner="ds")
    parse_options(TextOptions, {"tokenizer": "byte", "vocab_size": 5}, owner="ds")  # unused
    _refused(
        TextOptions,
        {"tokenizer": "pretrained"},
        "option 'tokenizer' = 'pretrained' needs option 'tokenizer_dir'",
    )
    _refused(
        TextOptions,
        {"tokenizer_dir": "/t"},
        "option 'tokenizer_dir' is set but 'tokenizer' = 'byte'; "
        "set tokenizer: pretrained to use it",
    )


def test_digits_and_mnist1d_metadata(tmp_path) -> None:
    _, digits = load_dataset("digits", raw_dir=tmp_path)
    assert (digits.name, digits.task, digits.num_classes, digits.input_shape) == (
        "digits",
        "classification",
        10,
        (64,),
    )
    splits, mnist = load_dataset(
        "mnist1d", raw_dir=tmp_path, options={"num_samples": 100, "seed": 3}
    )
    assert (mnist.name, mnist.task, mnist.num_classes) == ("mnist1d", "classification", 10)
    assert mnist.extra == {"num_samples": 100, "generation_seed": 3}
    length = mnist.input_shape[1]
    assert mnist.input_shape == (1, length)
    for split in splits.values():
        assert split["x"].dtype == torch.float32 and split["x"].shape[1:] == (1, length)


def test_tokenisers_describe_themselves_and_encode_to_int64() -> None:
    byte = ByteTokenizer()
    assert byte.describe() == {"tokenizer": "byte", "vocab_size": 256}
    assert byte.encode("hé").tolist() == list("hé".encode()) and byte.encode("a").dtype == np.int64
    assert byte.decode(np.array(list("hé".encode()), dtype=np.int64)) == "hé"
    char = CharTokenizer.fit("abca")
    assert char.describe() == {
        "tokenizer": "char",
        "vocab_size": char.vocab_size,
        "alphabet": char.alphabet,
    }
    assert char.encode("").dtype == np.int64 and char.encode("").shape == (0,)
    text = "the cat sat on the mat\nthe dog sat on the log\n" * 20
    bpe = BPETokenizer.fit(text, 300)
    assert bpe.describe() == {"tokenizer": "bpe", "vocab_size": bpe.vocab_size}
    assert bpe.encode("the cat").dtype == np.int64
    empty = bpe.encode("")
    assert empty.dtype == np.int64 and empty.shape == (0,)
    assert bpe.decode(bpe.encode("the cat sat")) == "the cat sat"


def test_build_tokenizer_errors() -> None:
    message = "tokenizer 'pretrained' needs tokenizer_dir (a local directory)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        build_tokenizer("pretrained", "text")
