"""The one training loop every phase uses: masked weights, a kept subset of samples.

Guarantees:
- weights outside ``masks`` are exactly zero before the first step and after every
  optimiser step (the mask is re-applied after ``step()``, so momentum and weight decay
  cannot revive them);
- only rows with ``kept[i]`` true are ever drawn (a sampler over those rows);
- same seed, same device, same inputs → identical final weights on CPU.

Under torchrun (a process group initialised, ``distributed``) the model is wrapped in
DistributedDataParallel and every rank draws the *same* global batches (same seeded
sampler, same augmentation draws) and trains on its contiguous slice of each; the loss is
scaled so that DDP's averaged gradient is the single-process gradient of the global batch,
and the masks are re-applied on every rank after every step. The result equals the
single-process run up to float rounding (README, "Distributed (torchrun)").


bf16 autocast and ``channels_last`` apply on any device when the config asks for them
(``--env gpu`` does; CPU tests run the same path, ``training.precision``); batches are
pinned for a CUDA target and copied with ``non_blocking``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from jmds_pipeline import distributed
from jmds_pipeline.config import TrainingConfig
from jmds_pipeline.data.types import Split
from jmds_pipeline.guards import TrainingGuard
from jmds_pipeline.sparsity.masks import apply_masks
from jmds_pipeline.training.augment import random_crop_flip, random_shift
from jmds_pipeline.training.batches import batch_loader, kept_rows
from jmds_pipeline.training.losses import per_sample_correct, per_sample_nll, tokens_per_sample
from jmds_pipeline.training.precision import autocast, pin_memory_for, to_device

BatchCallback = Callable[[dict[str, torch.Tensor], torch.Tensor], None]
"""Called after every optimiser step with the batch (on CPU) and its logits (detached)."""
EpochCallback = Callable[[dict[str, float]], None]
"""Called after every epoch with its history record (experiment tracking, tracking.py)."""


@dataclass
class TrainOutcome:
    history: list[dict[str, float]] = field(default_factory=list)
    rewind_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    samples_seen: int = 0
    rewind_seconds: float = 0.0  # training time until ``rewind_state`` was taken
    rewind_samples: int = 0  # ...and the samples drawn until then


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state (tied tensors are copied apart)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}


def build_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
            nesterov=config.momentum > 0,
        )
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, config: TrainingConfig) -> float:
    """Multiplier of the base learning rate at optimiser step ``step``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    if config.lr_schedule == "step":
        passed = sum(progress >= milestone for milestone in config.step_milestones)
        return config.step_gamma**passed
    return 1.0


def _data_parallel(model: nn.Module, on_cuda: bool) -> DistributedDataParallel:
    """``model`` under DDP (which broadcasts rank 0's weights and buffers to every rank)."""
    device_ids = [torch.cuda.current_device()] if on_cuda else None
    return DistributedDataParallel(model, device_ids=device_ids)


def train_model(
    model: nn.Module,
    train: Split,
    config: TrainingConfig,
    *,
    device: str = "cpu",
    seed: int = 0,
    masks: dict[str, torch.Tensor] | None = None,
    kept: torch.Tensor | None = None,
    epochs: int | None = None,
    rewind_epoch: int | None = None,
    on_batch: BatchCallback | None = None,
    on_epoch: EpochCallback | None = None,
    description: str = "train",
    prior_precision: float | None = None,
    prior_count: float | None = None,
) -> TrainOutcome:
    """Train ``model`` in place on the kept rows of ``train`` under ``masks``.

    ``epochs`` overrides ``config.epochs`` (rounds train for fewer epochs than the dense
    run); ``rewind_epoch`` = k stores the weights after k epochs (k = 0: at initialisation)
    in ``TrainOutcome.rewind_state``, the point that lottery-ticket rewinding returns to.

    ``prior_precision`` α (default ``config.prior_precision``) adds the Gaussian prior's
    α/(2·n) Σθ² to the mean loss, n = ``prior_count`` (default: the number of kept rows),
    so the loss is the negative log joint / n and its minimiser is the MAP.
    """
    num_epochs = config.epochs if epochs is None else epochs
    channels_last = config.channels_last
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device_masks = None
    if masks:
        device_masks = {name: mask.to(device) for name, mask in masks.items()}
        apply_masks(model, device_masks)

    torch.manual_seed(seed)  # dropout and any other global-RNG use inside the model
    generator = torch.Generator().manual_seed(seed)
    loader = batch_loader(
        train, batch_size=config.batch_size, kept=kept, shuffle=True, generator=generator,
        num_workers=config.num_workers, pin_memory=pin_memory_for(device),
    )
    num_rows = kept_rows(int(train["id"].shape[0]), kept).numel()
    if num_rows == 0:
        raise ValueError("no samples are kept: training needs at least one kept sample")
    alpha = config.prior_precision if prior_precision is None else prior_precision
    prior_scale = 0.0 if alpha is None else alpha / (2.0 * (prior_count or num_rows))
    steps_per_epoch = math.ceil(num_rows / config.batch_size)
    total_steps = steps_per_epoch * num_epochs
    warmup_steps = config.warmup_epochs * steps_per_epoch

    ranks = distributed.world_size()
    on_cuda = torch.device(device).type == "cuda"
    net = _data_parallel(model, on_cuda) if ranks > 1 else model
    optimizer = build_optimizer(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, config)
    )
    augment_generator = torch.Generator().manual_seed(seed + 1)
    guard = TrainingGuard(description, config.lr)  # NaN/inf stops the run, naming the step
    outcome = TrainOutcome()
    if rewind_epoch == 0:
        outcome.rewind_state = cpu_state(model)

    started = time.perf_counter()
    epoch_bar = tqdm(range(num_epochs), desc=description, leave=False, unit="epoch",
                     disable=not config.progress or not distributed.is_rank_zero())
    for epoch in epoch_bar:
        model.train()
        epoch_started = time.perf_counter()
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct_sum = 0
        seen = 0
        batch_index = -1
        for batch_index, batch in enumerate(loader):
            x = batch["x"]
            if config.augment == "crop_flip" and x.dim() == 4:
                x = random_crop_flip(x, generator=augment_generator)
            elif config.augment == "shift" and x.dim() == 3:
                x = random_shift(x, max_shift=config.max_shift, generator=augment_generator)
            y = batch["y"]
            batch_rows = int(y.shape[0])
            # Mean over the global batch's predictions: tokens for text, samples for labels.
            predictions = tokens_per_sample(y).sum().to(device)
            if ranks > 1:  # this rank's rows of the global batch, drawn and augmented above
                rows = distributed.local_slice(batch_rows)
                x, y = x[rows], y[rows]
            x = to_device(x, device, channels_last)
            y = y.to(device, non_blocking=True)
            with autocast(device, config.mixed_precision):
                logits = net(x)
            sample_loss = per_sample_nll(logits, y, config.label_smoothing)
            # × ranks: DDP averages the ranks' gradients, and their sum is the global one
            loss = sample_loss.sum() * ranks / predictions
            if prior_scale:
                loss = loss + prior_scale * sum(p.square().sum() for p in trainable)
            guard.check_loss(loss, epoch, batch_index)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            if device_masks is not None:
                apply_masks(model, device_masks)
            guard.after_step(model, epoch, batch_index)
            detached = logits.detach()
            loss_sum += sample_loss.detach().sum().double().cpu()
            correct_sum += int(per_sample_correct(detached, y).sum())
            seen += int(y.shape[0])
            if on_batch is not None:  # the global batch, with every rank's logits
                on_batch(batch, distributed.gather_rows(detached.float(), batch_rows).cpu())
        guard.check_weights(model, epoch, batch_index)
        if ranks > 1:  # the epoch's record is over the global batches
            totals = torch.tensor([float(loss_sum), correct_sum, seen], dtype=torch.float64)
            distributed.all_reduce_sum_([totals])
            loss_sum, correct_sum, seen = totals[0], int(totals[1]), int(totals[2])
        outcome.samples_seen += seen
        record = {
            "epoch": float(epoch + 1),
            "train_loss": float(loss_sum) / max(seen, 1),
            "train_accuracy": correct_sum / max(seen, 1),
            "lr": scheduler.get_last_lr()[0],
            "seconds": time.perf_counter() - epoch_started,
        }
        outcome.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        epoch_bar.set_postfix(loss=f"{record['train_loss']:.3f}",
                              acc=f"{record['train_accuracy']:.3f}")
        if rewind_epoch is not None and epoch + 1 == rewind_epoch:
            outcome.rewind_state = cpu_state(model)
            outcome.rewind_seconds = time.perf_counter() - started
            outcome.rewind_samples = outcome.samples_seen
    outcome.seconds = time.perf_counter() - started
    model.eval()
    return outcome
