"""Tokeniser contracts beyond round-trips: int64 out, unknowns, line endings, local-only.

Hand-built backends (a 3-entry BPE, a 5-word WordLevel vocabulary) make every expected id
list computable by hand.
"""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jmds_pipeline.data import text as text_module
from jmds_pipeline.data.language import TextOptions
from jmds_pipeline.data.text import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    PretrainedTokenizer,
    build_tokenizer,
    chunk,
)

# The hand-made WordLevel vocabulary: <s>/</s> are what a post-processor would wrap around
# each encoded piece if special tokens were (wrongly) added.
WORDS = {"[UNK]": 0, "<s>": 1, "</s>": 2, "hello": 3, "world": 4}


def _word_backend():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    backend = Tokenizer(models.WordLevel(WORDS, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()  # whitespace-only lines: no tokens
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)]
    )
    return backend


@pytest.fixture(scope="module")
def word_tokenizer_dir(tmp_path_factory) -> Path:
    """A saved Hugging Face tokenizer that adds <s> ... </s> and allows 2 tokens per input."""
    from transformers import PreTrainedTokenizerFast

    directory = tmp_path_factory.mktemp("words")
    PreTrainedTokenizerFast(
        tokenizer_object=_word_backend(),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="[UNK]",
        model_max_length=2,
    ).save_pretrained(directory)
    return directory


# ---- byte -------------------------------------------------------------------------------


def test_byte_decode_reads_ids_by_value_whatever_their_dtype() -> None:
    tokenizer = ByteTokenizer()
    hi = [0x68, 0x69]
    assert tokenizer.decode(np.array(hi, dtype=np.uint8)) == "hi"
    assert tokenizer.decode(np.array(hi, dtype=np.int64)) == "hi"
    assert tokenizer.decode(np.array(hi, dtype=np.float32)) == "hi"  # e.g. a float tensor


# ---- char -------------------------------------------------------------------------------


def test_char_tokenizer_unknown_character_between_known_ones_is_zero() -> None:
    tokenizer = CharTokenizer.fit("ca")  # alphabet "ac": a -> 1, c -> 2
    assert tokenizer.encode("abcd").tolist() == [1, 0, 2, 0]  # b sorts inside, d after


def test_char_tokenizer_with_an_empty_alphabet_still_gives_int64() -> None:
    ids = CharTokenizer.fit("").encode("xy")
    assert ids.dtype == np.int64 and ids.tolist() == [0, 0]


# ---- bpe --------------------------------------------------------------------------------


def test_bpe_trains_on_lines_with_their_line_endings() -> None:
    # Every training line ends in "\r\n", so that byte pair is frequent and gets merged;
    # training on lines stripped of their endings could never learn it.
    tokenizer = BPETokenizer.fit("the cat sat\r\n" * 50, vocab_size=300)
    assert len(tokenizer.encode("\r\n")) == 1
    assert len(ByteTokenizer().encode("\r\n")) == 2


def test_bpe_training_draws_no_progress_bar_on_a_terminal() -> None:
    # Progress bars are drawn only on a terminal, so the child trains on a pseudo-terminal.
    # It loads text.py alone (the package import pulls in torch, seconds of start-up).
    training = "the cat sat\n" * 50
    code = (
        "import importlib.util as u, sys; "
        f"spec = u.spec_from_file_location('jmds_pipeline.data.text', {text_module.__file__!r}); "
        "text = u.module_from_spec(spec); sys.modules[spec.name] = text; "
        "spec.loader.exec_module(text); "
        f"print(text.BPETokenizer.fit({training!r}, 300).vocab_size)"
    )
    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave
    )
    os.close(slave)
    output = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not data:
            break
        output += data
    os.close(master)
    assert child.wait() == 0, output
    # 256 bytes + 7 merges (t+h, th+e, a+t, Ġ+c, Ġc+at, Ġ+s, Ġs+at), and nothing else
    assert output.decode().split() == ["263"]
    assert BPETokenizer.fit(training, 300).vocab_size == 263  # the same in this process


def test_bpe_encode_gives_int64_even_when_a_line_has_no_tokens() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    backend = Tokenizer(models.BPE({"h": 0, "i": 1, "hi": 2}, [("h", "i")]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = BPETokenizer(backend)
    assert tokenizer.vocab_size == 3
    ids = tokenizer.encode("hi\n\nhi")  # lines "hi\n", "\n", "hi": [2], [], [2]
    assert ids.dtype == np.int64 and ids.tolist() == [2, 2]
    blank = tokenizer.encode("\n \n")
    assert blank.dtype == np.int64 and blank.shape == (0,)


def test_build_tokenizer_default_vocabulary_matches_the_dataset_option_default() -> None:
    from pydoc_data.topics import topics

    text = "".join(topics[key] for key in sorted(topics))[:20000]  # room for > 768 merges
    assert build_tokenizer("bpe", text).vocab_size == TextOptions().vocab_size == 1024


# ---- pretrained -------------------------------------------------------------------------


def test_pretrained_encode_adds_no_special_tokens(word_tokenizer_dir) -> None:
    tokenizer = PretrainedTokenizer(word_tokenizer_dir)
    ids = tokenizer.encode("hello world\nworld")  # lines "hello world\n", "world"
    assert ids.dtype == np.int64 and ids.tolist() == [3, 4, 4]  # no <s> = 1, </s> = 2
    assert tokenizer.describe() == {
        "tokenizer": "pretrained",
        "vocab_size": 5,
        "tokenizer_dir": str(word_tokenizer_dir),
    }


def test_pretrained_encode_gives_int64_for_empty_and_blank_text(word_tokenizer_dir) -> None:
    tokenizer = PretrainedTokenizer(word_tokenizer_dir)
    for text in ("", "\n \n"):
        ids = tokenizer.encode(text)
        assert ids.dtype == np.int64 and ids.shape == (0,), text
    ids = tokenizer.encode("hello\n\nworld")  # the blank middle line encodes to nothing
    assert ids.dtype == np.int64 and ids.tolist() == [3, 4]


def test_pretrained_encode_of_long_lines_logs_no_length_warning(word_tokenizer_dir) -> None:
    tokenizer = PretrainedTokenizer(word_tokenizer_dir)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        ids = tokenizer.encode("hello world hello\n")  # 3 tokens > model_max_length 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert ids.tolist() == [3, 4, 3]  # not truncated either
    assert [record.getMessage() for record in records] == []


def test_pretrained_tokenizer_never_asks_the_network(word_tokenizer_dir, monkeypatch) -> None:
    import transformers

    real = transformers.AutoTokenizer
    calls: list[dict] = []

    class Spy:
        @staticmethod
        def from_pretrained(name, **kwargs):
            calls.append(kwargs)
            return real.from_pretrained(name, **kwargs)

    monkeypatch.setattr(transformers, "AutoTokenizer", Spy)
    assert PretrainedTokenizer(word_tokenizer_dir).vocab_size == 5
    assert [call.get("local_files_only") for call in calls] == [True]


# ---- chunk ------------------------------------------------------------------------------


def test_chunk_gives_int64_blocks_from_narrower_token_dtypes() -> None:
    for dtype in (np.uint8, np.uint16, np.int32):
        x, y = chunk(np.arange(9, dtype=dtype), seq_len=3)  # 2 blocks of 4, 1 token left
        assert x.dtype == np.int64 and y.dtype == np.int64
        assert x.tolist() == [[0, 1, 2], [4, 5, 6]] and y.tolist() == [[1, 2, 3], [5, 6, 7]]
