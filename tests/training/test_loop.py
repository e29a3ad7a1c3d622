import torch
from torch import nn

from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.training.evaluate import evaluate
from jmds_pipeline.training.loop import cpu_state, train_model
from tests.conftest import make_blobs

FAST = dict(epochs=3, batch_size=16, progress=False)


def _masks(model: nn.Module) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        name: torch.rand(p.shape, generator=generator) > 0.5
        for name, p in model.named_parameters()
        if name.endswith("weight")
    }


def test_masked_weights_stay_exactly_zero_with_momentum_and_decay(blobs):
    for optimizer in ("sgd", "adamw"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        masks = _masks(model)
        config = TrainingConfig(optimizer=optimizer, lr=0.1, weight_decay=0.01, **FAST)
        train_model(model, blobs, config, masks=masks)
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            assert torch.count_nonzero(params[name][~mask]) == 0, (optimizer, name)
            # the active weights did train
            assert torch.count_nonzero(params[name][mask]) == int(mask.sum())


def test_only_kept_samples_are_drawn(blobs, blob_mlp):
    kept = torch.zeros(blobs["id"].numel(), dtype=torch.bool)
    kept[::3] = True
    drawn: list[torch.Tensor] = []
    outcome = train_model(
        blob_mlp, blobs, TrainingConfig(**FAST), kept=kept,
        on_batch=lambda batch, logits: drawn.append(batch["id"]),
    )
    drawn_ids = torch.cat(drawn)
    assert set(drawn_ids.tolist()) == set(blobs["id"][kept].tolist())
    assert drawn_ids.numel() == 3 * int(kept.sum())  # every kept sample once per epoch
    assert outcome.samples_seen == drawn_ids.numel()


def test_same_seed_gives_identical_weights_and_other_seed_differs(blobs):
    def run(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
        train_model(model, blobs, TrainingConfig(**FAST), seed=seed)
        return cpu_state(model)

    first, second, other = run(0), run(0), run(1)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_rewind_state_equals_weights_after_k_epochs(blobs):
    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    config = TrainingConfig(lr_schedule="constant", **FAST)
    long_run = train_model(fresh(), blobs, config, rewind_epoch=2)
    short_model = fresh()
    train_model(short_model, blobs, config, epochs=2)
    short = cpu_state(short_model)
    assert long_run.rewind_state is not None
    assert all(torch.equal(long_run.rewind_state[k], short[k]) for k in short)
    initial = train_model(fresh(), blobs, config, rewind_epoch=0).rewind_state
    assert all(torch.equal(initial[k], cpu_state(fresh())[k]) for k in initial)


def test_rewind_seconds_cover_exactly_the_epochs_before_the_rewind_point(blobs):
    config = TrainingConfig(lr_schedule="constant", **{**FAST, "epochs": 4})
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
    outcome = train_model(model, blobs, config, rewind_epoch=2)
    epoch_seconds = [record["seconds"] for record in outcome.history]
    # the clock runs across the first two epochs (and what lies between them), not beyond
    assert sum(epoch_seconds[:2]) <= outcome.rewind_seconds
    assert outcome.rewind_seconds <= outcome.seconds - sum(epoch_seconds[2:])
    assert train_model(model, blobs, config, rewind_epoch=0).rewind_seconds == 0.0


def test_training_learns_separable_blobs(blob_mlp):
    # One draw of the blobs split in two: the same class centres, held-out noise.
    both = make_blobs(n=240, seed=0)
    train = {key: value[:120] for key, value in both.items()}
    test = {key: value[120:] for key, value in both.items()}
    untrained = evaluate(blob_mlp, test, task="classification")["accuracy"]
    train_model(blob_mlp, train, TrainingConfig(epochs=15, batch_size=16, lr=0.05,
                                                progress=False))
    assert evaluate(blob_mlp, test, task="classification")["accuracy"] > 0.95 > untrained


def test_no_kept_samples_is_an_error(blobs, blob_mlp):
    kept = torch.zeros(blobs["id"].numel(), dtype=torch.bool)
    try:
        train_model(blob_mlp, blobs, TrainingConfig(**FAST), kept=kept)
    except ValueError as error:
        assert "no samples are kept" in str(error)
    else:
        raise AssertionError("training on zero samples must fail")
