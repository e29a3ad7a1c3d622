"""The JMDS round's nodes against independent references (no Kedro runner: fast).

- ``score_round`` scores the kept subset: its evidence equals ``estimate_evidence`` called
  on the kept rows alone, each weighted N/K (or 1 without rescaling).
- ``update_samples`` ranks by the contribution c_i, in the configured direction, within
  each class; the direction is a parameter of these tests, never assumed.
- ``train_round`` starts from the rewind point, or from the previous round's model when
  ``jmds.rewind`` is false: both compared with ``train_model`` run by hand.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from jmds_pipeline.data.types import DatasetMeta
from jmds_pipeline.evidence import estimate_evidence
from jmds_pipeline.pipelines.jmds.nodes import (
    KEPT,
    score_round,
    score_round_samples,
    train_round,
    update_mask,
    update_samples,
)
from jmds_pipeline.runtime import evidence_config, model_from_state, run_config_of, seeded_model
from jmds_pipeline.sparsity.masks import apply_masks
from jmds_pipeline.training.loop import cpu_state, train_model
from tests.conftest import make_blobs

META = DatasetMeta(name="digits", task="classification", num_classes=3, input_shape=(6,))


def _parameters(**jmds: object) -> dict:
    return {
        "dataset": "digits",
        "model": "mlp",
        "model_options": {"hidden_sizes": [8]},
        # off: the nodes would write data/08_reporting/digits/dvclive, a dvc.lock out
        "dvclive": False,
        "training": {"epochs": 2, "batch_size": 16, "progress": False},
        "jmds": {"rounds": 2, "round_epochs": 1,
                 "evidence": {"structure": "kfac", "subsample_size": None, "fisher": "exact",
                              "prior_precision": 1.5},
                 **jmds},
    }


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    """The run's model with its weights redrawn from ``seed`` (distinct seeds, distinct
    states: the run's own seeding would make them all equal)."""
    config = run_config_of(_parameters())
    state = cpu_state(seeded_model(config, META))
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(value.shape, generator=generator) * 0.3
            for name, value in state.items()}


def _kept(n: int, every: int = 3) -> dict[str, torch.Tensor]:
    rows = torch.ones(n, dtype=torch.bool)
    rows[::every] = False
    return {KEPT: rows, "id": torch.arange(1000, 1000 + n)}


def _all_masks(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: torch.ones_like(value, dtype=torch.bool)
            for name, value in state.items() if name.endswith("fc1.weight")}


@pytest.mark.parametrize("rescale", [True, False])
def test_score_round_scores_only_the_kept_rows_with_n_over_k_weights(rescale: bool) -> None:
    train = make_blobs(n=60)
    state = _state()
    masks = _all_masks(state)
    kept = _kept(60)
    parameters = _parameters(rescale_kept=rescale)
    _, evidence = score_round(state, masks, kept, train, META.to_dict(), parameters)

    config = run_config_of(parameters)
    rows = kept[KEPT]
    k = int(rows.sum())
    weight = 60 / k if rescale else 1.0
    reference = estimate_evidence(
        model_from_state(config, META, state), train["x"][rows], train["y"][rows],
        sample_weights=torch.full((k,), weight), masks=masks, prunable=list(masks),
        config=evidence_config(config, META), score_samples=False,
    )
    # float32 network: sums over rows in another order differ in the 7th digit
    assert evidence["log_evidence"] == pytest.approx(reference.log_evidence, rel=1e-6)
    assert evidence["num_active"] == reference.num_active


@pytest.mark.parametrize("rescore", [True, False])
def test_sample_scores_are_the_kept_subsets_under_the_chosen_mask(rescore: bool) -> None:
    """Phase C scores every row at θ ⊙ m (m: the mask phase B just chose, or the one before
    it with rescore_samples false); the kept rows' c_i are those of the kept subset alone,
    weighted N/K."""
    train = make_blobs(n=60)
    state = _state()
    before = _all_masks(state)
    after = {name: torch.rand(m.shape, generator=torch.Generator().manual_seed(1)) > 0.4
             for name, m in before.items()}
    kept = _kept(60)
    parameters = _parameters(rescore_samples=rescore)
    table, scoring = score_round_samples(state, before, after, kept, train, META.to_dict(),
                                         parameters)
    assert scoring["seconds"] >= scoring["timings"]["total"] > 0

    config = run_config_of(parameters)
    masks = after if rescore else before
    model = model_from_state(config, META, state)
    apply_masks(model, masks)
    rows = kept[KEPT]
    k = int(rows.sum())
    reference = estimate_evidence(
        model, train["x"][rows], train["y"][rows], sample_weights=torch.full((k,), 60 / k),
        masks=masks, prunable=list(masks), config=evidence_config(config, META),
    )
    assert table.loc[table["kept"], "contribution"].to_numpy() == pytest.approx(
        reference.sample_contribution.numpy(), rel=1e-5)
    # Every row is scored (dropped rows too), and the table is aligned by id.
    assert table["id"].tolist() == train["id"].tolist()
    assert table["kept"].tolist() == rows.tolist()
    assert bool(table["contribution"].notna().all())


def _sample_table(n: int = 40, classes: int = 4, seed: int = 0) -> pd.DataFrame:
    """Contributions and losses ranked in opposite orders within each class (so ranking by
    loss cannot pass for ranking by contribution)."""
    generator = torch.Generator().manual_seed(seed)
    contribution = -torch.rand(n, generator=generator, dtype=torch.float64) * 5
    loss = torch.rand(n, generator=generator, dtype=torch.float64) * 5  # independent of c
    return pd.DataFrame({
        "id": torch.arange(1000, 1000 + n).numpy(),
        "label": (torch.arange(n) % classes).numpy(),
        "kept": torch.ones(n, dtype=torch.bool).numpy(),
        "contribution": contribution.numpy(),
        "loss": loss.numpy(),
        "leverage": (-contribution - loss).numpy(),
    })


@pytest.mark.parametrize("keep", ["low", "high"])
@pytest.mark.parametrize("mode", ["class_balanced", "topk"])
def test_update_samples_keeps_the_chosen_side_of_the_contribution(keep: str, mode: str) -> None:
    table = _sample_table()
    train = make_blobs(n=40, classes=4)
    kept = {KEPT: torch.ones(40, dtype=torch.bool), "id": train["id"].clone()}
    parameters = _parameters(keep=keep, sample_selection=mode, target_data_sparsity=0.5,
                             rounds=1)
    new, out = update_samples(table, kept, train, parameters, round_index=1)
    rows = new[KEPT]
    assert int(rows.sum()) == 20
    assert out["kept"].tolist() == rows.tolist()
    assert torch.equal(new["id"], kept["id"])
    c = torch.tensor(table["contribution"].to_numpy())
    groups = [train["y"] == label for label in range(4)] if mode == "class_balanced" else [
        torch.ones(40, dtype=torch.bool)]
    for group in groups:
        chosen, dropped = c[group & rows], c[group & ~rows]
        if keep == "high":
            assert chosen.min() >= dropped.max()
        else:
            assert chosen.max() <= dropped.min()
    if mode == "class_balanced":  # 10 rows per class, half kept in each
        assert [int(rows[g].sum()) for g in groups] == [5, 5, 5, 5]


def test_update_samples_in_penalty_mode_drops_exactly_the_rows_below_lambda() -> None:
    # J changes by −c_i + λ2 when row i goes (design.md §2): with λ2 = 0 every row with
    # c_i < 0 would go, so the cap decides; the dropped ones are the lowest c_i.
    table = _sample_table(n=20, classes=2)
    train = make_blobs(n=20, classes=2)
    kept = {KEPT: torch.ones(20, dtype=torch.bool), "id": train["id"].clone()}
    parameters = _parameters(mode="penalty", lambda_data=0.0, max_data_sparsity=0.25)
    new, _ = update_samples(table, kept, train, parameters, round_index=1)
    rows = new[KEPT]
    c = torch.tensor(table["contribution"].to_numpy())
    assert int((~rows).sum()) == 5
    assert c[~rows].max() <= c[rows].min()


def test_update_samples_never_revives_a_dropped_row() -> None:
    table = _sample_table()
    train = make_blobs(n=40, classes=4)
    before = torch.ones(40, dtype=torch.bool)
    best = int(torch.tensor(table["contribution"].to_numpy()).argmax())
    before[best] = False  # the row every direction-"high" ranking would want back
    kept = {KEPT: before, "id": train["id"].clone()}
    for keep in ("low", "high"):
        new, _ = update_samples(table, kept, train, _parameters(keep=keep, rounds=1,
                                                                target_data_sparsity=0.5),
                                 round_index=1)
        assert not bool(new[KEPT][best])


def test_update_mask_hits_the_rounds_target_removing_the_highest_scores() -> None:
    generator = torch.Generator().manual_seed(0)
    scores = {"a": torch.randn(10, 6, generator=generator)}
    masks = {"a": torch.ones(10, 6, dtype=torch.bool)}
    parameters = _parameters(target_model_sparsity=0.75, rounds=2, schedule="geometric")
    new, summary = update_mask(scores, masks, parameters, round_index=1)
    # Round 1 of 2, geometric: density (1 − 0.75)^(1/2) = 0.5 → 30 of 60 removed.
    assert int((~new["a"]).sum()) == 30
    assert scores["a"][~new["a"]].min() >= scores["a"][new["a"]].max()
    assert summary["active"].tolist() == [30]


@pytest.mark.parametrize("rewind", [True, False])
def test_train_round_starts_from_the_rewind_point_or_the_previous_model(rewind: bool) -> None:
    train, val = make_blobs(n=48), make_blobs(n=24, seed=1)
    rewind_state, previous_state = _state(seed=1), _state(seed=2)
    assert not torch.equal(rewind_state["net.fc1.weight"], previous_state["net.fc1.weight"])
    masks = _all_masks(rewind_state)
    kept = _kept(48)
    parameters = _parameters(rewind=rewind, tie_prior=False)
    state, log = train_round(rewind_state, previous_state, masks, kept,
                             {"prior_precision": 1.0}, train, val, META.to_dict(), parameters)

    config = run_config_of(parameters)
    start = rewind_state if rewind else previous_state
    model = model_from_state(config, META, start)
    train_model(model, train, config.training, seed=config.seed, masks=masks, kept=kept[KEPT],
                epochs=config.jmds.round_epochs)
    expected = cpu_state(model)
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    assert log["trained_ids"] == sorted(train["id"][kept[KEPT]].tolist())


@pytest.mark.parametrize(("score_from", "round_index", "starts_at"),
                         [("rewind", 2, "rewind"), ("rewind", 3, "previous"),
                          ("dense", 2, "previous")])
def test_continuing_rounds_start_from_the_model_round_one_scored(
    score_from: str, round_index: int, starts_at: str
) -> None:
    # rewind: false continues from the model just scored; round 2's previous_state input
    # is the dense model, which round 1 did not score when score_from is rewind
    train, val = make_blobs(n=48), make_blobs(n=24, seed=1)
    rewind_state, previous_state = _state(seed=1), _state(seed=2)
    masks, kept = _all_masks(rewind_state), _kept(48)
    parameters = _parameters(rewind=False, tie_prior=False, score_from=score_from)
    state, _ = train_round(rewind_state, previous_state, masks, kept, {"prior_precision": 1.0},
                           train, val, META.to_dict(), parameters, round_index=round_index)
    config = run_config_of(parameters)
    start = rewind_state if starts_at == "rewind" else previous_state
    model = model_from_state(config, META, start)
    train_model(model, train, config.training, seed=config.seed, masks=masks, kept=kept[KEPT],
                epochs=config.jmds.round_epochs)
    expected = cpu_state(model)
    assert all(torch.equal(state[name], expected[name]) for name in expected)


@pytest.mark.parametrize("score_from", ["dense", "rewind"])
def test_round_one_scores_the_chosen_state_and_logs_its_pretraining(score_from: str) -> None:
    from jmds_pipeline.pipelines.jmds.nodes import round_one_state

    dense, rewind = _state(seed=1), _state(seed=2)
    val = make_blobs(n=24, seed=3)
    pretraining = {"seconds": 8.0, "rewind_seconds": 2.0, "samples_seen": 400, "epochs": 4,
                   "rewind_samples": 100}
    parameters = {**_parameters(score_from=score_from), "rewind_epoch": 1}
    state, log = round_one_state(dense, rewind, pretraining, val, META.to_dict(), parameters)
    chosen = rewind if score_from == "rewind" else dense
    assert all(torch.equal(state[k], chosen[k]) for k in chosen)
    assert all(state[k].data_ptr() != chosen[k].data_ptr() for k in chosen)  # a copy
    # one of the four dense epochs, or all of them
    assert (log["seconds"], log["samples_seen"]) == ((2.0, 100) if score_from == "rewind"
                                                     else (8.0, 400))
    # the validation accuracy of the chosen model, counted here by hand
    model = model_from_state(run_config_of(parameters), META, chosen)
    with torch.no_grad():
        right = (model(val["x"]).argmax(1) == val["y"]).float().mean()
    assert log["val"]["accuracy"] == pytest.approx(float(right))


def test_round_trace_rows_describe_each_scored_model() -> None:
    from jmds_pipeline.pipelines.jmds.trace import round_trace

    masks_1 = {"a": torch.ones(4, 5, dtype=torch.bool)}
    masks_2 = {"a": torch.ones(4, 5, dtype=torch.bool)}
    masks_2["a"][0, :] = False  # 5 of 20 pruned
    kept_1 = {KEPT: torch.ones(8, dtype=torch.bool)}
    kept_2 = {KEPT: torch.tensor([True] * 6 + [False] * 2)}
    rounds = []
    for r, (masks, kept) in enumerate([(masks_1, kept_1), (masks_2, kept_2)], start=1):
        evidence = {"log_evidence": -10.0 * r, "prior_precision": 1.0 + r, "seconds": 0.5 * r,
                    "stationarity": {"relative": 0.1 * r}}
        scoring = {"seconds": 0.25 * r}
        log = {"val": {"accuracy": 0.9 - 0.1 * r}, "seconds": 3.0 * r, "samples_seen": 80 * r}
        rounds += [evidence, scoring, masks, kept, log]
    frame, payload = round_trace(*rounds)
    assert frame["model_sparsity"].tolist() == [0.0, 0.25]
    assert frame["data_sparsity"].tolist() == [0.0, 0.25]
    assert frame["evidence_seconds"].tolist() == [0.75, 1.5]  # phase B + phase C
    assert frame["train_samples"].tolist() == [80.0, 160.0]
    assert frame["val_accuracy"].tolist() == pytest.approx([0.8, 0.7])
    assert frame["objective"].tolist() == [-10.0, -20.0]  # log Z when no objective is given
    assert payload["rounds"][1]["stationarity"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="5 inputs per round"):
        round_trace(*rounds[:4])
