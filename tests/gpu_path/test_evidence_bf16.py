"""The evidence under bf16 autocast + channels_last on CPU, against the float32 evidence.

Autocast rounds the forward activations to bf16; everything after (factor products, sums,
eigendecompositions) must stay float64. Ground truths: (1) the first layer's input factor
A is built from the raw input, which autocast never rounds, so it must equal the float32
one to float64 round-off — a bf16 product anywhere in its accumulation would miss by ~u;
(2) every other quantity agrees with the float32 evidence within a few bf16 round-offs.
"""

from __future__ import annotations

import pytest
import torch

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.evidence import EvidenceConfig, estimate_evidence
from jmds_pipeline.evidence.engine import kron_factors
from jmds_pipeline.training.loop import train_model
from tests.gpu_path.helpers import BF16_U, LayerProbe, image_split, relative, small_cnn

EXACT = dict(subsample_size=None, fisher="exact", weight_score="obs")


@pytest.fixture(scope="module")
def trained() -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    split = image_split()
    model = small_cnn()
    train_model(model, split, TrainingConfig(epochs=3, batch_size=32, lr=0.05, progress=False))
    return model, split


def _config(mixed: bool) -> EvidenceConfig:
    return EvidenceConfig(**EXACT, mixed_precision=mixed, channels_last=mixed)


def test_factors_stay_float64_and_match_the_fp32_factors(trained) -> None:
    model, split = trained
    fp32 = kron_factors(model, split["x"], split["y"], config=_config(False))
    model.to(memory_format=torch.channels_last)
    try:
        bf16 = kron_factors(model, split["x"], split["y"], config=_config(True))
    finally:
        model.to(memory_format=torch.contiguous_format)
    assert set(bf16) == set(fp32) == {"0", "2", "5", "7"}
    for name, (a, g) in bf16.items():
        assert a.dtype == g.dtype == torch.float64, name
        a32, g32 = fp32[name]
        assert relative(a, a32) <= 4 * BF16_U, name  # measured ≤ 0.6 u
        assert relative(g, g32) <= 4 * BF16_U, name  # measured ≤ 2.0 u
    # the raw input is never rounded, so the first A is fp32's to float64 round-off
    assert relative(bf16["0"][0], fp32["0"][0]) < 1e-10
    # while its G, from bf16 activations downstream, is not: autocast was on
    assert relative(bf16["0"][1], fp32["0"][1]) > 1e-5


def test_bf16_evidence_and_scores_match_fp32_within_bf16_rounding(trained) -> None:
    model, split = trained
    fp32 = estimate_evidence(model, split["x"], split["y"], config=_config(False))
    probe = LayerProbe({"conv": model[2], "linear": model[7]})
    try:
        bf16 = estimate_evidence(model, split["x"], split["y"], config=_config(True))
    finally:
        probe.remove()
    assert probe.seen["conv"] == {(True, torch.bfloat16)}  # NHWC inputs, bf16 compute
    assert model[2].weight.is_contiguous()  # the caller's model is handed back in NCHW
    assert probe.seen["linear"] == {(False, torch.bfloat16)}

    # log Z: ~180 nats here; measured difference 0.10 nats (0.15 u relative)
    assert bf16.log_evidence == pytest.approx(fp32.log_evidence, rel=BF16_U)
    assert bf16.log_likelihood == pytest.approx(fp32.log_likelihood, rel=BF16_U)
    assert bf16.log_det_ratio == pytest.approx(fp32.log_det_ratio, rel=BF16_U)
    assert bf16.prior_precision == pytest.approx(fp32.prior_precision, rel=BF16_U)
    assert bf16.sample_contribution.dtype == torch.float64
    # per sample, ℓ_i inherits the bf16 rounding of the logits (absolute u·|logit|), and the
    # leverage is a quadratic form in bf16-rounded output gradients: measured 4.4 u and
    # 9.5 u (relative L2 over the 192 samples); the weight scores 0.2-1.6 u
    assert relative(bf16.sample_contribution, fp32.sample_contribution) <= 8 * BF16_U
    assert relative(bf16.sample_leverage, fp32.sample_leverage) <= 16 * BF16_U
    for name, scores in fp32.weight_scores.items():
        assert relative(bf16.weight_scores[name], scores) <= 4 * BF16_U, name


def test_full_curvature_refuses_mixed_precision() -> None:
    with pytest.raises(ValueError, match="mixed_precision = True with structure = 'full'"):
        EvidenceConfig(structure="full", mixed_precision=True)
