"""GPT-2 language models (transformers) behind the plain ``forward(x) -> logits`` contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from jmds_pipeline.data.options import check_at_least, check_fraction
from jmds_pipeline.data.types import DatasetMeta

# size -> (n_layer, n_head, n_embd); small and medium are the released GPT-2 shapes.
GPT2_SIZES = {"tiny": (2, 2, 64), "small": (12, 12, 768), "medium": (24, 16, 1024)}


@dataclass(frozen=True)
class GPT2Options:
    size: Literal["tiny", "small", "medium"] = "tiny"
    n_positions: int | None = None  # context length; None: the dataset's seq_len
    dropout: float = 0.1  # GPT-2's residual, embedding and attention dropout
    attention: Literal["sdpa", "eager"] = "sdpa"  # eager suits torch.func transforms
    # A directory written by ``save_pretrained``: its weights and config are used instead
    # of size/n_positions/dropout (read with local_files_only, never downloaded).
    pretrained_dir: str | None = None

    def __post_init__(self) -> None:
        if self.n_positions is not None:
            check_at_least(self.n_positions, 1, "n_positions")
        check_fraction(self.dropout, "dropout")


class CausalLM(nn.Module):
    """A transformers causal LM whose ``forward(input_ids)`` returns logits ``(B, T, V)``.

    The wrapped model is ``self.lm``, so parameter names are ``lm.<transformers name>``
    (e.g. ``lm.transformer.h.0.attn.c_attn.weight``), stable across the two ways of
    building it. ``lm_head`` shares its weight with ``lm.transformer.wte`` (GPT-2 ties
    them), so ``named_parameters`` lists that tensor once, as the embedding.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=x, use_cache=False).logits


def build_gpt2(meta: DatasetMeta, options: GPT2Options) -> CausalLM:
    """GPT-2 of ``options.size`` from a config (vocabulary ``meta.num_classes``), or the
    model saved in ``options.pretrained_dir``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if meta.task != "language_modeling":
        raise ValueError(
            f"model 'gpt2' needs a language-modelling dataset; {meta.name!r} is {meta.task}"
        )
    seq_len = meta.input_shape[0]
    if options.pretrained_dir is not None:
        if not Path(options.pretrained_dir).is_dir():
            raise FileNotFoundError(
                f"model 'gpt2' option 'pretrained_dir' = {options.pretrained_dir!r} is not a "
                "directory; point it at one written by save_pretrained (nothing is downloaded)"
            )
        lm = GPT2LMHeadModel.from_pretrained(
            options.pretrained_dir, local_files_only=True, attn_implementation=options.attention
        )
        _check_pretrained(lm.config, meta, Path(options.pretrained_dir))
        return CausalLM(lm)
    n_layer, n_head, n_embd = GPT2_SIZES[options.size]
    n_positions = seq_len if options.n_positions is None else options.n_positions
    if n_positions < seq_len:
        raise ValueError(
            f"model 'gpt2' option 'n_positions' = {n_positions} is shorter than the "
            f"dataset's seq_len = {seq_len}; accepted: >= {seq_len}"
        )
    config = GPT2Config(
        vocab_size=meta.num_classes,
        n_positions=n_positions,
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        resid_pdrop=options.dropout,
        embd_pdrop=options.dropout,
        attn_pdrop=options.dropout,
        # GPT-2's default special ids (50256) lie outside small vocabularies; the data
        # has no special tokens, so none are declared.
        bos_token_id=None,
        eos_token_id=None,
        use_cache=False,
    )
    config._attn_implementation = options.attention
    return CausalLM(GPT2LMHeadModel(config))


def _check_pretrained(config: Any, meta: DatasetMeta, directory: Path) -> None:
    if config.vocab_size < meta.num_classes:
        raise ValueError(
            f"model 'gpt2': the model in {directory} has a vocabulary of {config.vocab_size} "
            f"tokens but dataset {meta.name!r} uses {meta.num_classes}; tokenise the data "
            "with the model's own tokenizer (dataset options tokenizer: pretrained, "
            "tokenizer_dir: <dir>)"
        )
    if config.n_positions < meta.input_shape[0]:
        raise ValueError(
            f"model 'gpt2': the model in {directory} handles {config.n_positions} positions "
            f"but the dataset's seq_len is {meta.input_shape[0]}"
        )
