"""GPT-2 from a config and from a local pretrained directory."""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline.data import DatasetMeta
from jmds_pipeline.models import build_model, prunable_parameter_names

TEXT = DatasetMeta("pydoc", "language_modeling", 256, (16,))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model("gpt2", TEXT).eval()


def test_tiny_gpt2_returns_logits_over_the_vocabulary(tiny) -> None:
    config = tiny.lm.config
    assert (config.n_layer, config.n_head, config.n_embd) == (2, 2, 64)
    assert config.n_positions == 16 and config.vocab_size == 256
    x = torch.randint(0, 256, (3, 16))
    with torch.no_grad():
        logits = tiny(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, 16, 256)


def test_gpt2_is_causal(tiny) -> None:
    x = torch.randint(0, 256, (1, 16))
    changed = x.clone()
    changed[0, -1] = (x[0, -1] + 1) % 256
    with torch.no_grad():
        assert torch.allclose(tiny(x)[:, :-1], tiny(changed)[:, :-1], atol=1e-5)


def test_gpt2_prunable_names(tiny) -> None:
    names = prunable_parameter_names(tiny)
    assert len(names) == 8  # c_attn, c_proj, c_fc, c_proj per block
    assert names[0] == "lm.transformer.h.0.attn.c_attn.weight"
    assert "lm.transformer.wte.weight" not in names
    # lm_head is tied to the token embedding: listed once, under the embedding's name.
    with_head = prunable_parameter_names(tiny, include_output_layer=True)
    assert with_head == [*names, "lm.transformer.wte.weight"]
    with_embeddings = prunable_parameter_names(tiny, include_embeddings=True)
    assert with_embeddings[:2] == ["lm.transformer.wte.weight", "lm.transformer.wpe.weight"]


def test_gpt2_n_positions_must_cover_the_sequence() -> None:
    with pytest.raises(ValueError, match=r"'n_positions' = 8.*seq_len = 16"):
        build_model("gpt2", TEXT, {"n_positions": 8})


def test_gpt2_from_a_local_pretrained_directory(tiny, tmp_path) -> None:
    tiny.lm.save_pretrained(tmp_path)
    loaded = build_model("gpt2", TEXT, {"pretrained_dir": str(tmp_path)}).eval()
    assert [name for name, _ in loaded.named_parameters()] == [
        name for name, _ in tiny.named_parameters()
    ]
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), tiny(x))
    bigger = DatasetMeta("pydoc", "language_modeling", 1000, (16,))
    with pytest.raises(ValueError, match=r"vocabulary of 256 tokens.*uses 1000"):
        build_model("gpt2", bigger, {"pretrained_dir": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=r"'pretrained_dir' = .*absent.*save_pretrained"):
        build_model("gpt2", TEXT, {"pretrained_dir": str(tmp_path / "absent")})
