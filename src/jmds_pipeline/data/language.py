"""Language-modelling datasets: pydoc's topic help (offline) and WikiText-2/103 (files).

Every dataset goes the same way: pick the train/val/test texts without overlap, fit the
tokeniser on the train text only, encode each split, and cut it into non-overlapping
blocks of ``seq_len + 1`` tokens (:func:`jmds_pipeline.data.text.chunk`). One block is one
sample; ids number the blocks train first, then val, then test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from jmds_pipeline.data.errors import DatasetNotFoundError
from jmds_pipeline.data.options import check_at_least, check_fraction
from jmds_pipeline.data.splits import TEST_SPLIT_SEED, make_split
from jmds_pipeline.data.text import build_tokenizer, chunk
from jmds_pipeline.data.types import SPLIT_NAMES, DatasetMeta, Split


@dataclass(frozen=True)
class TextOptions:
    seq_len: int = 64
    tokenizer: Literal["byte", "char", "bpe", "pretrained"] = "byte"
    vocab_size: int = 1024  # bpe only
    tokenizer_dir: str | None = None  # pretrained only: a local Hugging Face tokenizer

    def __post_init__(self) -> None:
        check_at_least(self.seq_len, 1, "seq_len")
        if self.tokenizer == "bpe":
            check_at_least(self.vocab_size, 257, "vocab_size")  # 256 bytes + >= 1 merge
        if self.tokenizer == "pretrained" and self.tokenizer_dir is None:
            raise ValueError("option 'tokenizer' = 'pretrained' needs option 'tokenizer_dir'")
        if self.tokenizer_dir is not None and self.tokenizer != "pretrained":
            raise ValueError(
                f"option 'tokenizer_dir' is set but 'tokenizer' = {self.tokenizer!r}; "
                "set tokenizer: pretrained to use it"
            )


@dataclass(frozen=True)
class PydocOptions(TextOptions):
    val_fraction: float = 0.1  # of the text left after the test documents
    test_fraction: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction(self.val_fraction, "val_fraction")
        check_fraction(self.test_fraction, "test_fraction", allow_zero=False)


@dataclass(frozen=True)
class WikiTextOptions(TextOptions):
    # Which release to read: 'raw' (wiki.*.raw, the original text: best for byte/BPE
    # models), 'tokens' (wiki.*.tokens: word-tokenised, rare words as <unk>), or 'auto'
    # (raw if present, else tokens).
    layout: Literal["auto", "raw", "tokens"] = "auto"


def load_pydoc(options: PydocOptions, seed: int) -> tuple[dict[str, Split], DatasetMeta]:
    """The help topics shipped with Python (``pydoc_data.topics``, ~465k characters).

    Split by document so no text is shared between splits: whole topics go to test (a
    fixed choice, the same for every run seed) until ``test_fraction`` of the characters
    is reached, then to val (chosen with ``seed``) until ``val_fraction`` of the rest;
    each split's topics are joined in sorted key order.
    """
    from pydoc_data.topics import topics

    documents = dict(sorted(topics.items()))
    test_keys = _pick_documents(documents, list(documents), options.test_fraction, TEST_SPLIT_SEED)
    rest = [key for key in documents if key not in test_keys]
    val_keys = _pick_documents(documents, rest, options.val_fraction, seed)
    assignment = {
        "train": [key for key in rest if key not in val_keys],
        "val": [key for key in rest if key in val_keys],
        "test": [key for key in documents if key in test_keys],
    }
    texts = {name: "\n".join(documents[key] for key in keys) for name, keys in assignment.items()}
    extra = {"documents": {name: len(keys) for name, keys in assignment.items()}}
    return tokenised_splits("pydoc", texts, options, extra)


WIKITEXT_LAYOUTS = {
    # layout -> (folder pattern, file suffix) of the two Salesforce releases
    "raw": ("wikitext-{size}-raw", "raw"),
    "tokens": ("wikitext-{size}", "tokens"),
}
_WIKITEXT_FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}


def wikitext_files(raw_dir: Path, size: str, layout: str) -> dict[str, Path]:
    """The train/val/test files of WikiText-``size`` under ``raw_dir``, by layout preference.

    Raises :class:`DatasetNotFoundError` naming every place looked in when no layout is
    complete.
    """
    layouts = ["raw", "tokens"] if layout == "auto" else [layout]
    looked = []
    for name in layouts:
        folder_pattern, suffix = WIKITEXT_LAYOUTS[name]
        folder = raw_dir / folder_pattern.format(size=size)
        files = {
            split: folder / f"wiki.{stem}.{suffix}" for split, stem in _WIKITEXT_FILE_SPLITS.items()
        }
        if all(path.is_file() for path in files.values()):
            return files
        looked.append(str(folder / f"wiki.{{train,valid,test}}.{suffix}"))
    raise DatasetNotFoundError(
        f"wikitext{size}",
        " or ".join(looked),
        f"Download the WikiText-{size} release (Salesforce; e.g. wikitext-{size}-raw-v1.zip) "
        f"and extract it into {raw_dir} so that one of those paths exists. There is no "
        "automatic download for this dataset.",
    )


def load_wikitext(
    size: str, raw_dir: Path, options: WikiTextOptions
) -> tuple[dict[str, Split], DatasetMeta]:
    """WikiText-2 or -103 from its released train/valid/test files (the official split)."""
    files = wikitext_files(raw_dir, size, options.layout)
    texts = {split: path.read_text(encoding="utf-8") for split, path in files.items()}
    layout = "raw" if files["train"].suffix == ".raw" else "tokens"
    return tokenised_splits(f"wikitext{size}", texts, options, {"layout": layout})


def tokenised_splits(
    name: str, texts: dict[str, str], options: TextOptions, extra: dict[str, object]
) -> tuple[dict[str, Split], DatasetMeta]:
    """Tokenise (fitted on train), chunk and number the three splits' texts."""
    tokenizer = build_tokenizer(
        options.tokenizer,
        texts["train"],
        vocab_size=options.vocab_size,
        tokenizer_dir=options.tokenizer_dir,
    )
    splits: dict[str, Split] = {}
    next_id = 0
    tokens = {}
    for split in SPLIT_NAMES:
        encoded = tokenizer.encode(texts[split])
        tokens[split] = len(encoded)
        x, y = chunk(encoded, options.seq_len)
        ids = torch.arange(next_id, next_id + x.shape[0])
        next_id += x.shape[0]
        splits[split] = make_split(torch.from_numpy(x), torch.from_numpy(y), ids)
    meta = DatasetMeta(
        name=name,
        task="language_modeling",
        num_classes=tokenizer.vocab_size,
        input_shape=(options.seq_len,),
        extra={**tokenizer.describe(), "seq_len": options.seq_len, "tokens": tokens, **extra},
    )
    return splits, meta


def _pick_documents(
    documents: dict[str, str], keys: list[str], fraction: float, seed: int
) -> set[str]:
    """Whole documents from ``keys`` holding close to, and at most, ``fraction`` of their
    characters: taken in a seeded random order, skipping any that would overshoot (so one
    long topic cannot swell a split). At least one document when ``fraction`` > 0."""
    if fraction == 0 or not keys:
        return set()
    target = fraction * sum(len(documents[key]) for key in keys)
    order = torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed)).tolist()
    picked: set[str] = set()
    size = 0
    for position in order:
        length = len(documents[keys[position]])
        if size + length <= target:
            picked.add(keys[position])
            size += length
    return picked or {keys[order[0]]}
