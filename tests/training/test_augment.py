import torch
from torch.nn import functional as F

from jmds_pipeline.training.augment import random_crop_flip, random_shift


def _transforms(images: torch.Tensor, out: torch.Tensor, padding: int) -> list[tuple]:
    """For each image, the (dy, dx, flipped) views of its zero-padded self equal to its
    output (brute force over every translation and flip)."""
    _, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4)
    found = []
    for b in range(images.shape[0]):
        matches = []
        for dy in range(2 * padding + 1):
            for dx in range(2 * padding + 1):
                view = padded[b, :, dy : dy + height, dx : dx + width]
                matches += [
                    (dy, dx, flip)
                    for flip, candidate in ((False, view), (True, view.flip(-1)))
                    if torch.equal(out[b], candidate)
                ]
        found.append(matches)
    return found


def _distinct(batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    # every pixel value distinct and non-zero, so one view matches at most one transform
    n = batch * channels * height * width
    return torch.arange(1, n + 1, dtype=torch.float32).view(batch, channels, height, width)


def test_each_output_is_a_shift_or_flipped_shift_of_its_input():
    images = _distinct(2, 3, 6, 6)
    out = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    assert all(len(matches) == 1 for matches in _transforms(images, out, 2))


def test_crop_flip_draws_every_offset_and_flips_about_half():
    images = _distinct(300, 1, 9, 9)  # ≥ 5 × 5 pixels stay in view: one match each
    out = random_crop_flip(images, generator=torch.Generator().manual_seed(1))  # padding 4
    matches = _transforms(images, out, 4)
    assert all(len(m) == 1 for m in matches)
    found = [m[0] for m in matches]
    assert {dy for dy, _, _ in found} == set(range(9))
    assert {dx for _, dx, _ in found} == set(range(9))
    flips = sum(flip for _, _, flip in found)
    assert 100 < flips < 200  # Binomial(300, 1/2): ± 4.6 standard deviations


def test_seeded_augmentation_repeats():
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8


def test_shift_moves_each_signal_by_one_offset_and_draws_every_offset():
    signals = torch.arange(1, 200 * 2 * 5 + 1, dtype=torch.float32).view(200, 2, 5)
    out = random_shift(signals, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == signals.shape
    shifts = []
    for b in range(200):
        # shift s: out[:, t] = signal[:, t + s], zero where t + s falls outside
        matches = [
            s
            for s in range(-2, 3)
            if torch.equal(
                out[b],
                torch.stack(
                    [signals[b, :, t + s] if 0 <= t + s < 5 else torch.zeros(2) for t in range(5)],
                    dim=1,
                ),
            )
        ]
        assert len(matches) == 1
        shifts.append(matches[0])
    assert set(shifts) == {-2, -1, 0, 1, 2}
    again = random_shift(signals, max_shift=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
