"""Image datasets read from ``raw_dir``: CIFAR-10/100 (torchvision) and ImageNet (folders).

Images are kept in memory as ``uint8`` NCHW tensors (a quarter of float32's size); the
model's first module scales them to [0, 1] and normalises them with ``meta.mean/std``.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jmds_pipeline.data.errors import DatasetNotFoundError
from jmds_pipeline.data.options import check_at_least, check_fraction
from jmds_pipeline.data.splits import carve, make_split
from jmds_pipeline.data.types import DatasetMeta, Split
from jmds_pipeline.errors import RunError

# Per-channel statistics of the training images, the values commonly used for each set.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CIFAROptions:
    download: bool = False  # let torchvision fetch the archive into raw_dir if files are missing
    val_fraction: float = 0.1
    # The batches are pickles (unpickling runs code): only the official files, whose md5
    # torchvision knows, are read. false: read files that differ (own re-exports, tests).
    verify_md5: bool = True

    def __post_init__(self) -> None:
        check_fraction(self.val_fraction, "val_fraction")


def _extracted(base: type) -> type:
    """``base`` (torchvision's CIFAR10/100) checking that the extracted files exist
    instead of comparing their md5 sums.

    torchvision's integrity check hashes every batch file against the official md5s on
    each load, so only the genuine release can be read. With the md5s set to ``None``
    its own ``check_integrity`` tests existence only; parsing stays torchvision's. A
    download is still verified: ``download()`` checks the archive's md5 (``tgz_md5``).
    """
    return type(
        f"Extracted{base.__name__}",
        (base,),
        {
            "train_list": [[name, None] for name, _ in base.train_list],
            "test_list": [[name, None] for name, _ in base.test_list],
            "meta": {**base.meta, "md5": None},
        },
    )


class DatasetIntegrityError(RunError):
    """A dataset file is not the official release's (its md5 differs)."""


def md5_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def check_cifar_md5(raw_dir: Path, dataset_class: type) -> None:
    """Every file torchvision knows an md5 for must have it, before anything is unpickled."""
    folder = raw_dir / dataset_class.base_folder
    known = [*dataset_class.train_list, *dataset_class.test_list,
             [dataset_class.meta["filename"], dataset_class.meta["md5"]]]
    for name, expected in known:
        path = folder / name
        if expected and path.is_file() and md5_of(path) != expected:
            raise DatasetIntegrityError(
                f"{path} has md5 {md5_of(path)}, not the official {expected}: it is not the "
                f"{dataset_class.__name__} release (re-extract {dataset_class.filename}); "
                "files you made yourself are read with dataset_options.verify_md5=false"
            )


def cifar_files(raw_dir: Path, dataset_class: type) -> list[Path]:
    """Every file torchvision reads for ``dataset_class`` (batches and meta)."""
    folder = raw_dir / dataset_class.base_folder
    names = [name for name, _ in dataset_class.train_list + dataset_class.test_list]
    return [folder / name for name in [*names, dataset_class.meta["filename"]]]


def load_cifar(
    name: str, raw_dir: Path, options: CIFAROptions, seed: int
) -> tuple[dict[str, Split], DatasetMeta]:
    """CIFAR-10 or CIFAR-100 from the python-pickle release under ``raw_dir``.

    The official test batch is the test split; val is carved from the 50 000 training
    images with ``seed``. Ids: training images 0..49 999 in file order, test images after.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if name == "cifar10" else CIFAR100
    files = cifar_files(raw_dir, base)
    missing = [path.name for path in files if not path.is_file()]
    if missing and not options.download:
        raise DatasetNotFoundError(
            name,
            raw_dir / base.base_folder,
            f"Missing: {', '.join(missing)}. Either extract {base.filename} ({base.url}) into "
            f"{raw_dir}, or set the dataset option download: true "
            "(e.g. --params dataset_options.download=true) to have torchvision fetch it.",
        )
    if options.verify_md5:
        check_cifar_md5(raw_dir, base)
    dataset_class = _extracted(base)
    train_set = dataset_class(root=str(raw_dir), train=True, download=options.download)
    test_set = dataset_class(root=str(raw_dir), train=False, download=False)
    x_train, y_train = _cifar_tensors(train_set)
    x_test, y_test = _cifar_tensors(test_set)
    n_train, n_test = x_train.shape[0], x_test.shape[0]
    train_all = make_split(x_train, y_train, torch.arange(n_train))
    test = make_split(x_test, y_test, torch.arange(n_train, n_train + n_test))
    train, val = carve(train_all, options.val_fraction, seed)
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    meta = DatasetMeta(
        name=name,
        task="classification",
        num_classes=len(train_set.classes),
        input_shape=(3, 32, 32),
        mean=mean,
        std=std,
        extra={"classes": list(train_set.classes)},
    )
    return {"train": train, "val": val, "test": test}, meta


def _cifar_tensors(dataset: Any) -> tuple[torch.Tensor, torch.Tensor]:
    # torchvision holds NHWC uint8 (it transposes the pickled NCHW rows for PIL).
    x = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(dataset.targets, dtype=torch.int64)


@dataclass(frozen=True)
class ImageNetOptions:
    image_size: int = 64
    val_fraction: float = 0.1
    workers: int = 8  # threads decoding images (PIL releases the GIL while decoding)

    def __post_init__(self) -> None:
        check_at_least(self.image_size, 8, "image_size")
        check_fraction(self.val_fraction, "val_fraction")
        check_at_least(self.workers, 1, "workers")


IMAGENET_HOW_TO_GET = (
    "ImageNet cannot be downloaded automatically: obtain ILSVRC2012 from "
    "https://image-net.org (registration required) and arrange it as "
    "{root}/train/<wnid>/*.JPEG and {root}/val/<wnid>/*.JPEG (the validation images "
    "must be sorted into wnid folders, e.g. with the widely used valprep.sh script)."
)


def load_imagenet(
    raw_dir: Path, options: ImageNetOptions, seed: int
) -> tuple[dict[str, Split], DatasetMeta]:
    """ImageNet from the ImageFolder layout ``raw_dir/imagenet/{train,val}/<wnid>/*``.

    Every image is decoded once, its shorter side resized to ``image_size`` and centre-
    cropped, and kept in memory as uint8 (downsampled ImageNet, as in Chrabaszcz et al.
    2017). The reason is the data contract of this project: a split is a tensor in memory
    (it goes through safetensors and the Kedro catalog, and samples are kept or dropped by
    id), and at 64×64 the 1.28M training images take ~16 GB as uint8, whereas full
    resolution would need a streaming loader. The ``val`` folder is the test split; val is
    carved from train with ``seed``. Ids: train images in ImageFolder's (sorted) order, then
    the val-folder images.
    """
    from torchvision.datasets import ImageFolder

    root = raw_dir / "imagenet"
    how_to_get = IMAGENET_HOW_TO_GET.format(root=root)
    folders = {}
    for split in ("train", "val"):
        try:
            folders[split] = ImageFolder(str(root / split))
        except FileNotFoundError as error:  # no folder, no class folders or no images
            raise DatasetNotFoundError("imagenet", root / split, f"{error}. {how_to_get}") from None
    class_to_idx = folders["train"].class_to_idx
    unknown = sorted(set(folders["val"].class_to_idx) - set(class_to_idx))
    if unknown:
        raise ValueError(
            f"dataset 'imagenet': {root / 'val'} has classes absent from train: {unknown[:5]}"
        )
    with ThreadPoolExecutor(max_workers=options.workers) as pool:
        tensors = {}
        for split, folder in folders.items():
            index_to_class = {index: name for name, index in folder.class_to_idx.items()}
            paths = [path for path, _ in folder.samples]
            labels = [class_to_idx[index_to_class[index]] for _, index in folder.samples]
            images = list(pool.map(lambda path: _load_image(path, options.image_size), paths))
            tensors[split] = (
                torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
                torch.tensor(labels, dtype=torch.int64),
            )
    n_train, n_test = tensors["train"][0].shape[0], tensors["val"][0].shape[0]
    train_all = make_split(*tensors["train"], torch.arange(n_train))
    test = make_split(*tensors["val"], torch.arange(n_train, n_train + n_test))
    train, val = carve(train_all, options.val_fraction, seed)
    meta = DatasetMeta(
        name="imagenet",
        task="classification",
        num_classes=len(class_to_idx),
        input_shape=(3, options.image_size, options.image_size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        extra={"classes": list(class_to_idx), "image_size": options.image_size},
    )
    return {"train": train, "val": val, "test": test}, meta


def _load_image(path: str, size: int) -> np.ndarray:
    """RGB ``(size, size, 3)`` uint8: shorter side resized to ``size``, then centre crop."""
    from PIL import Image

    with Image.open(path) as image:
        # For JPEGs, let the decoder downscale by a power of two first: much faster.
        image.draft("RGB", (size, size))
        image = image.convert("RGB")
        width, height = image.size
        scale = size / min(width, height)
        resized = (max(size, round(width * scale)), max(size, round(height * scale)))
        image = image.resize(resized, Image.Resampling.BICUBIC)
        left, top = (resized[0] - size) // 2, (resized[1] - size) // 2
        return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
