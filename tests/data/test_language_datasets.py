"""pydoc and WikiText: tokenisation, chunking, splits, ids and file layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from jmds_pipeline.data import SPLIT_NAMES, DatasetNotFoundError, load_dataset
from jmds_pipeline.data.text import ByteTokenizer


def test_pydoc_byte_level_defaults(tmp_path) -> None:
    splits, meta = load_dataset("pydoc", raw_dir=tmp_path, seed=0)
    assert meta.task == "language_modeling" and meta.num_classes == 256
    assert meta.input_shape == (64,)
    train = splits["train"]
    assert train["x"].dtype == torch.int64 and train["x"].shape[1] == 64
    assert torch.equal(train["x"][:, 1:], train["y"][:, :-1])  # y is x shifted by one
    sizes = {name: len(splits[name]["id"]) for name in SPLIT_NAMES}
    total = sum(sizes.values())
    assert 0.07 < sizes["test"] / total <= 0.1 and 0.07 < sizes["val"] / total <= 0.1
    ids = torch.cat([splits[name]["id"] for name in SPLIT_NAMES])
    assert torch.equal(ids, torch.arange(total))  # train, then val, then test
    text = ByteTokenizer().decode(train["x"][0].tolist() + train["y"][0, -1:].tolist())
    assert text.isprintable() or "\n" in text


def test_pydoc_splits_share_no_document(tmp_path) -> None:
    from pydoc_data.topics import topics

    splits, meta = load_dataset("pydoc", raw_dir=tmp_path, seed=0)
    assert sum(meta.extra["documents"].values()) == len(topics)
    decode = ByteTokenizer().decode
    test_text = decode(splits["test"]["x"].flatten().tolist())
    train_text = decode(splits["train"]["x"].flatten().tolist())
    # a long test-only line never appears in train
    line = max(test_text.splitlines(), key=len)
    assert len(line) > 60 and line not in train_text


def test_pydoc_seed_reproducibility_and_fixed_test(tmp_path) -> None:
    first, _ = load_dataset("pydoc", raw_dir=tmp_path, seed=5)
    again, _ = load_dataset("pydoc", raw_dir=tmp_path, seed=5)
    other, _ = load_dataset("pydoc", raw_dir=tmp_path, seed=6)
    for name in SPLIT_NAMES:
        assert torch.equal(first[name]["x"], again[name]["x"])
    assert torch.equal(first["test"]["x"], other["test"]["x"])
    assert not torch.equal(first["val"]["x"][:10], other["val"]["x"][:10])


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_pydoc_learned_tokenizers_fit_on_train(tmp_path, tokenizer) -> None:
    options = {"tokenizer": tokenizer, "seq_len": 32, "vocab_size": 512}
    splits, meta = load_dataset("pydoc", raw_dir=tmp_path, options=options)
    assert meta.extra["tokenizer"] == tokenizer
    assert meta.input_shape == (32,)
    for name in SPLIT_NAMES:
        assert int(splits[name]["x"].max()) < meta.num_classes
    if tokenizer == "bpe":
        assert meta.num_classes == 512
    else:
        assert len(meta.extra["alphabet"]) + 1 == meta.num_classes


def _write_wikitext(folder: Path, suffix: str) -> dict[str, str]:
    folder.mkdir(parents=True)
    texts = {}
    for stem in ("train", "valid", "test"):
        texts[stem] = "".join(
            f" = {stem} article {i} = \n\n The {stem} text number {i} goes on . \n"
            for i in range(30)
        )
        (folder / f"wiki.{stem}.{suffix}").write_text(texts[stem], encoding="utf-8")
    return texts


@pytest.mark.parametrize(
    ("name", "size"), [("wikitext2", "2"), ("wikitext103", "103")], ids=["wt2", "wt103"]
)
def test_wikitext_raw_layout(tmp_path, name, size) -> None:
    texts = _write_wikitext(tmp_path / f"wikitext-{size}-raw", "raw")
    splits, meta = load_dataset(name, raw_dir=tmp_path, options={"seq_len": 16})
    assert meta.name == name and meta.extra["layout"] == "raw"
    for split, stem in zip(SPLIT_NAMES, ("train", "valid", "test"), strict=True):
        n_blocks = len(texts[stem].encode()) // 17
        assert splits[split]["x"].shape == (n_blocks, 16)
        decoded = ByteTokenizer().decode(splits[split]["x"][0].tolist())
        assert decoded == texts[stem][:16]
    ids = torch.cat([splits[split]["id"] for split in SPLIT_NAMES])
    assert torch.equal(ids, torch.arange(len(ids)))


def test_wikitext_tokens_layout_and_preference(tmp_path) -> None:
    _write_wikitext(tmp_path / "wikitext-2", "tokens")
    _, meta = load_dataset("wikitext2", raw_dir=tmp_path)
    assert meta.extra["layout"] == "tokens"
    _write_wikitext(tmp_path / "wikitext-2-raw", "raw")
    _, meta = load_dataset("wikitext2", raw_dir=tmp_path)
    assert meta.extra["layout"] == "raw"  # auto prefers the untokenised text
    _, meta = load_dataset("wikitext2", raw_dir=tmp_path, options={"layout": "tokens"})
    assert meta.extra["layout"] == "tokens"


def test_wikitext_missing_files_give_one_clear_error(tmp_path) -> None:
    (tmp_path / "wikitext-2-raw").mkdir()
    (tmp_path / "wikitext-2-raw" / "wiki.train.raw").write_text("only train")
    with pytest.raises(DatasetNotFoundError) as caught:
        load_dataset("wikitext2", raw_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "wikitext-2-raw" / "wiki.{train,valid,test}.raw") in message
    assert str(tmp_path / "wikitext-2" / "wiki.{train,valid,test}.tokens") in message
    assert "no automatic download" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_pydoc_with_a_local_pretrained_tokenizer(tmp_path) -> None:
    from transformers import GPT2TokenizerFast

    from jmds_pipeline.data.text import BPETokenizer

    trained = BPETokenizer.fit("the cat sat on the mat.\n" * 20, vocab_size=280)
    GPT2TokenizerFast(tokenizer_object=trained.backend).save_pretrained(tmp_path / "tok")
    options = {"tokenizer": "pretrained", "tokenizer_dir": str(tmp_path / "tok")}
    splits, meta = load_dataset("pydoc", raw_dir=tmp_path, options=options)
    assert meta.extra["tokenizer"] == "pretrained"
    assert meta.num_classes == len(GPT2TokenizerFast.from_pretrained(tmp_path / "tok"))
    assert int(splits["train"]["x"].max()) < meta.num_classes
