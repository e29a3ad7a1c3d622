import torch

from jmds_pipeline.training.augment import random_crop_flip


def test_each_output_is_a_shift_or_flipped_shift_of_its_input():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = random_crop_flip(images, padding=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for b in range(2):
        candidates = [
            view
            for dy in range(5)
            for dx in range(5)
            for view in (padded[b, :, dy:dy + 6, dx:dx + 6],
                         padded[b, :, dy:dy + 6, dx:dx + 6].flip(-1))
        ]
        assert any(torch.equal(out[b], c) for c in candidates)


def test_seeded_augmentation_repeats():
    images = torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    b = random_crop_flip(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.dtype == torch.uint8
