"""The language-model track end to end in the small: K-FAC over GPT-2's Conv1D against the
exact GGN, perplexity, per-sequence sample contributions, per-sequence forgetting / EL2N,
masked training of Conv1D weights, and the pydoc recipe's configuration.

(WikiText file loading, tokenisers, Conv1D factors by hand and GPT-2's prunable names are
tested in tests/data, tests/evidence/test_factors.py and tests/models/test_gpt2.py.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from jmds_pipeline.baselines.el2n import el2n_scores
from jmds_pipeline.baselines.forgetting import ForgettingTracker
from jmds_pipeline.config import TrainingConfig, build_run_config
from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.models import build_model, prunable_parameter_names
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import train_model
from jmds_pipeline.training.losses import IGNORE_INDEX, per_sample_nll

pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
VOCAB, SEQ = 12, 6


def _sequences(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Arithmetic progressions mod VOCAB (learnable), as (x, y) next-token pairs."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    step = torch.randint(1, 3, (n, 1), generator=g)
    seq = (start + torch.arange(SEQ + 1) * step) % VOCAB
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()


def _one_layer_gpt2() -> nn.Module:
    """1 block, 2 heads, n_embd 16, MLP width 32, vocab 12, 6 positions; no dropout; eager
    attention (torch.func), float64; wrapped like the registry's gpt2 (``lm.`` names)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from jmds_pipeline.models.gpt2 import CausalLM

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_layer=1, n_head=2, n_embd=16, n_inner=32,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None,
        eos_token_id=None, use_cache=False,
    )
    config._attn_implementation = "eager"
    return CausalLM(GPT2LMHeadModel(config)).double().eval()


@pytest.fixture(scope="module")
def fitted_gpt2() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The 1-layer GPT-2 (2544 parameters) after 60 full-batch Adam steps on Σ NLL + ½‖θ‖²."""
    model = _one_layer_gpt2()
    x, y = _sequences(8)
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(60):
        optimiser.zero_grad()
        loss = per_sample_nll(model(x), y).sum()
        loss = loss + 0.5 * sum((p * p).sum() for p in model.parameters())
        loss.backward()
        optimiser.step()
    return model, x, y


def _tiny_meta() -> DatasetMeta:
    return DatasetMeta("pydoc", "language_modeling", VOCAB, (SEQ,))


# --- (a) K-FAC over Conv1D against the exact GGN ----------------------------------------


# Measured (torch 2.14, float64, 8 sequences, α = 1): full log Z = −208.6 (log-det ratio
# 333.0); kfac −631.7 (1179.1), relative error of log Z 2.03; diag −1131.1 (2177.9), 4.42.
# With 8·6 tokens for 2544 parameters the GGN has rank ≤ 48·11, so any diagonal-ish
# approximation of log det(H + αI) is far too large; K-FAC's Conv1D blocks still cut the
# diagonal's error by more than half. (16 sequences: kfac 2.11, diag 5.11: the error is the
# approximation's, not the sample size's.)
def test_kfac_log_evidence_of_a_one_layer_gpt2_against_full(fitted_gpt2) -> None:
    model, x, y = fitted_gpt2
    results = {
        structure: estimate_evidence(
            model, x, y,
            config=EvidenceConfig(
                structure=structure, likelihood="language_modeling", prior_precision=1.0,
                fisher="exact", exact_fisher_max_classes=SEQ * VOCAB, subsample_size=None,
            ),
            score_samples=False, score_weights=False,
        )
        for structure in ("full", "kfac", "diag")
    }
    full, kfac, diag = results["full"], results["kfac"], results["diag"]
    assert full.num_active == kfac.num_active == 2544
    # Same fit and prior terms: the approximation is entirely in the log determinant.
    assert kfac.log_likelihood == pytest.approx(full.log_likelihood, rel=1e-10)
    assert kfac.prior_term == pytest.approx(full.prior_term, rel=1e-10)
    # The relative error is the approximation's, and large (see above), so a loose upper
    # bound would pass almost any K-FAC bug. The computation is deterministic (float64,
    # fixed seeds): pin the measured 2.028 within ±2 %, a band of ±8.5 nats on the K-FAC
    # log Z of −631.7 (summation order across BLAS builds moves it by far less).
    rel = abs(kfac.log_evidence - full.log_evidence) / abs(full.log_evidence)
    assert rel == pytest.approx(2.028, rel=0.02)
    # Both approximations overestimate log det P here; K-FAC is the closer one.
    assert full.log_det_ratio < kfac.log_det_ratio < diag.log_det_ratio
    assert abs(kfac.log_evidence - full.log_evidence) < 0.5 * abs(
        diag.log_evidence - full.log_evidence
    )


# --- (b) perplexity -------------------------------------------------------------------------


class _Uniform(nn.Module):
    """Equal logits over the vocabulary at every position."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, self.vocab) + 0 * self.unused


@pytest.mark.parametrize("vocab", [12, 256])
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(vocab: int) -> None:
    x = torch.randint(0, vocab, (7, SEQ))
    split = {"x": x, "y": torch.roll(x, -1, 1), "id": torch.arange(7)}
    metrics = evaluate(_Uniform(vocab), split, task="language_modeling", batch_size=3)
    assert metrics["perplexity"] == pytest.approx(vocab, rel=1e-5)
    assert metrics["loss"] == pytest.approx(math.log(vocab), rel=1e-6)


# --- (c) sample contributions per sequence --------------------------------------------------


def test_sample_contributions_are_one_finite_value_per_sequence() -> None:
    model = build_model("gpt2", _tiny_meta(), {"dropout": 0.0}).eval()
    x, y = _sequences(10, seed=1)
    y[3] = IGNORE_INDEX  # a sequence with no counted token: nothing to fit, no curvature
    y[4, 2:] = IGNORE_INDEX
    weights = torch.ones(10)
    weights[7] = 0.0  # dropped sequences are still scored
    result = estimate_evidence(
        model, x, y, sample_weights=weights, masks=None,
        prunable=prunable_parameter_names(model),
        config=EvidenceConfig(likelihood="language_modeling", fisher="mc", batch_size=4),
    )
    for values in (result.sample_contribution, result.sample_loss, result.sample_leverage):
        assert values.shape == (10,)  # one per row (sequence), not per token
        assert bool(torch.isfinite(values).all())
    with torch.no_grad():
        expected = per_sample_nll(model(x), y).double()  # token NLLs summed per sequence
    assert torch.allclose(result.sample_loss, expected, rtol=1e-5, atol=1e-6)
    assert bool((result.sample_leverage[torch.arange(10) != 3] > 0).all())
    assert result.sample_loss[3] == 0 and result.sample_leverage[3] == 0
    # Fewer counted tokens, less loss: sequence 4 counts 2 of its 6 tokens.
    assert result.sample_loss[4] < per_sample_nll(model(x[4:5]), torch.roll(x, -1, 1)[4:5])


def test_sequence_contribution_is_the_derivative_of_log_evidence(fitted_gpt2) -> None:
    """c_i = ∂ log Z / ∂ s_i per sequence (exact GGN, fixed α), by central differences,
    for a whole sequence and one with ignored tokens: a derivation, not the formula."""
    model, x, y = fitted_gpt2
    y = y.clone()
    y[2, 3:] = IGNORE_INDEX  # only its first 3 tokens count
    config = EvidenceConfig(structure="full", likelihood="language_modeling",
                            prior_precision=1.0, fisher="exact",
                            exact_fisher_max_classes=SEQ * VOCAB, subsample_size=None)
    base = estimate_evidence(model, x, y, config=config, score_weights=False)
    eps = 1e-4
    for i in (0, 2):
        values = []
        for sign in (1.0, -1.0):
            s = torch.ones(x.shape[0], dtype=torch.float64)
            s[i] += sign * eps
            values.append(estimate_evidence(model, x, y, sample_weights=s, config=config,
                                             score_samples=False,
                                             score_weights=False).log_evidence)
        derivative = (values[0] - values[1]) / (2 * eps)
        assert float(base.sample_contribution[i]) == pytest.approx(derivative, abs=1e-5)


# --- (d) forgetting and EL2N per sequence -------------------------------------------------


def _logits_predicting(predictions: list[list[int]], vocab: int = 4) -> torch.Tensor:
    """Logits whose argmax at (i, t) is predictions[i][t]."""
    return 10.0 * nn.functional.one_hot(torch.tensor(predictions), vocab).float()


def test_forgetting_counts_a_sequence_as_right_when_most_tokens_are() -> None:
    # Three sequences of 4 targets; sequence 2 has one ignored position (3 counted).
    y = torch.tensor([[0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 2, IGNORE_INDEX]])
    batch = {"id": torch.tensor([10, 11, 12]), "y": y}
    tracker = ForgettingTracker(batch["id"])
    callback = tracker.callback()
    # Presentation 1: seq 10 3/4 right (right), seq 11 2/4 (exactly half: wrong),
    # seq 12 2/3 counted right (right; the prediction at the ignored position is not counted).
    callback(batch, _logits_predicting([[0, 1, 2, 0], [0, 1, 0, 0], [0, 1, 0, 3]]))
    # Presentation 2: seq 10 1/4 (forgotten), seq 11 4/4 (learned), seq 12 1/3 (forgotten).
    callback(batch, _logits_predicting([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 0, 0]]))
    # Presentation 3: seq 10 right again, seq 11 2/4 (forgotten), seq 12 3/3.
    callback(batch, _logits_predicting([[0, 1, 2, 3], [0, 1, 3, 0], [0, 1, 2, 1]]))
    assert tracker.scores().tolist() == [1, 1, 1]
    assert tracker.learned.tolist() == [True, True, True]
    # A sequence never mostly right ranks above every learned one (score = presentations).
    never = ForgettingTracker(torch.tensor([5]))
    for _ in range(3):
        never.callback()({"id": torch.tensor([5]), "y": y[:1]},
                         _logits_predicting([[0, 1, 0, 0]]))
    assert never.scores().tolist() == [3]


class _Fixed(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_el2n_of_a_sequence_is_its_mean_error_over_counted_tokens() -> None:
    # A confidently wrong token has error ‖e_wrong − e_y‖ = √2, a right one 0.
    logits = _logits_predicting([[1, 1], [1, 1], [2, 2]], vocab=3).double() * 100
    y = torch.tensor([[0, 1], [0, IGNORE_INDEX], [2, 2]])
    scores = el2n_scores([_Fixed()], logits, y)
    assert scores.shape == (3,)
    # one of two wrong → √2 / 2; one counted and wrong → √2 (not √2 / 2); all right → 0
    assert scores.tolist() == pytest.approx([math.sqrt(2) / 2, math.sqrt(2), 0.0], abs=1e-9)


# --- (e) masked training keeps pruned Conv1D weights at zero ------------------------------


def test_masked_training_keeps_pruned_conv1d_weights_exactly_zero() -> None:
    meta = DatasetMeta("pydoc", "language_modeling", 32, (8,))
    torch.manual_seed(0)
    model = build_model("gpt2", meta)  # tiny: 2 blocks, n_embd 64, dropout 0.1
    names = prunable_parameter_names(model)
    params = dict(model.named_parameters())
    assert {name.rsplit(".", 2)[-2] for name in names} == {"c_attn", "c_proj", "c_fc"}
    generator = torch.Generator().manual_seed(0)
    masks = {name: torch.rand(params[name].shape, generator=generator) > 0.5 for name in names}
    before = {name: params[name].detach().clone() for name in names}
    x = torch.randint(0, 32, (12, 8), generator=generator)
    split = {"x": x, "y": torch.roll(x, -1, 1), "id": torch.arange(12)}
    config = TrainingConfig(optimizer="adamw", lr=0.01, weight_decay=0.1, epochs=1,
                            batch_size=4, grad_clip=1.0, progress=False)
    train_model(model, split, config, masks=masks, epochs=2)  # 6 AdamW steps
    for name in names:
        weight = params[name].detach()
        assert bool((weight[~masks[name]] == 0).all()), name  # exactly zero
        assert not torch.equal(weight[masks[name]], before[name][masks[name]]), name


# --- the pydoc recipe -------------------------------------------------------------------


def _parameters(**top: object) -> dict:
    params = {}
    for name in ("parameters.yml", "parameters_jmds.yml"):
        params.update(yaml.safe_load((REPO / "conf" / "base" / name).read_text()))
    params.update(top)
    return params


def test_pydoc_recipe_sets_gpt2_tiny_and_its_round_epochs() -> None:
    config = build_run_config(_parameters(dataset="pydoc"))
    assert (config.model, config.model_options["size"]) == ("gpt2", "tiny")
    assert config.dataset_options["seq_len"] == 64
    # The recipe's jmds section takes effect (parameters_jmds.yml must leave round_epochs
    # unset for that), and each round trains the dense schedule's remaining epochs.
    assert config.jmds.round_epochs == config.training.epochs - config.rewind_epoch == 3
    assert not config.jmds.include_embeddings
    # ...while a top-level (--params) value still wins over the recipe.
    jmds = {**_parameters()["jmds"], "round_epochs": 2}
    assert build_run_config(_parameters(dataset="pydoc", jmds=jmds)).jmds.round_epochs == 2


class _Table(nn.Module):
    """Logits from a fixed (position, token) table: any distribution, no training."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table[torch.arange(x.shape[1])][None, :, :] + 0.1 * nn.functional.one_hot(
            x, self.table.shape[1]).double()


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(0, SEQ), min_size=1, max_size=6),
       batch_size=st.integers(1, 4), seed=st.integers(0, 1000))
def test_perplexity_is_exp_of_total_nll_over_counted_tokens(lengths, batch_size, seed) -> None:
    """Sequences of unequal lengths (the tail is IGNORE_INDEX): perplexity is
    exp(Σ token NLL / Σ counted tokens) over the whole split, whatever the batching
    (the losses are summed in float32: 1e-6 relative)."""
    assume(sum(lengths) > 0)
    generator = torch.Generator().manual_seed(seed)
    model = _Table(torch.randn(SEQ, VOCAB, generator=generator, dtype=torch.float64))
    n = len(lengths)
    x = torch.randint(0, VOCAB, (n, SEQ), generator=generator)
    y = torch.randint(0, VOCAB, (n, SEQ), generator=generator)
    for i, length in enumerate(lengths):
        y[i, length:] = IGNORE_INDEX
    counted = y != IGNORE_INDEX
    with torch.no_grad():
        nll = nn.functional.cross_entropy(model(x)[counted], y[counted], reduction="sum")
    split = {"x": x, "y": y, "id": torch.arange(n)}
    metrics = evaluate(model, split, task="language_modeling", batch_size=batch_size)
    assert metrics["perplexity"] == pytest.approx(math.exp(float(nll) / sum(lengths)), rel=1e-6)
    assert metrics["loss"] == pytest.approx(float(nll) / sum(lengths), rel=1e-6)
