"""The registry's contract: names, options, errors, and cheap imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from jmds_pipeline.data import DATASETS, DatasetMeta, load_dataset

ALL = ["cifar10", "cifar100", "digits", "imagenet", "mnist1d", "pydoc", "wikitext103", "wikitext2"]


def test_every_design_dataset_is_registered() -> None:
    assert sorted(DATASETS) == ALL


def test_unknown_dataset_names_value_and_accepted(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"'mnist2d'.*accepted.*'digits'.*'mnist1d'"):
        load_dataset("mnist2d", raw_dir=tmp_path)


def test_unknown_option_names_key_and_accepted(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"dataset 'digits'.*'val_frac'.*accepted.*val_fraction"):
        load_dataset("digits", raw_dir=tmp_path, options={"val_frac": 0.2})


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("digits", {"val_fraction": 1.5}, r"'val_fraction' = 1.5.*\[0, 1\)"),
        ("digits", {"as_image": "yes"}, r"'as_image' = 'yes'.*true or false"),
        ("mnist1d", {"num_samples": 3}, r"'num_samples' = 3.*>= 10"),
        ("mnist1d", {"num_samples": 50.5}, r"'num_samples' = 50.5.*integer"),
        ("pydoc", {"tokenizer": "words"}, r"'tokenizer' = 'words'.*'byte', 'char'"),
        ("pydoc", {"tokenizer": "pretrained"}, r"needs option 'tokenizer_dir'"),
        ("pydoc", {"tokenizer_dir": "/x"}, r"set tokenizer: pretrained"),
        ("cifar10", {"download": 1}, r"'download' = 1"),
        ("wikitext2", {"layout": "zip"}, r"'layout' = 'zip'.*'raw', 'tokens'"),
        ("wikitext2", {"val_fraction": 0.1}, r"unknown option 'val_fraction'"),
    ],
)
def test_bad_option_values_are_rejected_before_loading(tmp_path, name, options, message) -> None:
    with pytest.raises(ValueError, match=message):
        load_dataset(name, raw_dir=tmp_path, options=options)


def test_options_must_be_a_mapping(tmp_path) -> None:
    with pytest.raises(ValueError, match="must be a mapping"):
        load_dataset("digits", raw_dir=tmp_path, options=[("val_fraction", 0.1)])  # type: ignore[arg-type]


def test_meta_round_trips_through_a_dict(tmp_path) -> None:
    _, meta = load_dataset("digits", raw_dir=tmp_path)
    assert DatasetMeta.from_dict(meta.to_dict()) == meta


def test_importing_the_registry_does_not_import_heavy_libraries() -> None:
    # Reading a config imports the registry; torchvision/transformers must wait for a loader.
    code = (
        "import sys, jmds_pipeline.data, jmds_pipeline.models; "
        "heavy = [m for m in ('torchvision', 'transformers', 'sklearn', 'mnist1d') "
        "if m in sys.modules]; print(heavy); assert not heavy"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
