"""Model registry: ``build_model(name, meta, options)`` returns logits-producing modules."""

from jmds_pipeline.models.layers import Classifier, InputNormalisation
from jmds_pipeline.models.pruning import is_linear_map, output_layer, prunable_parameter_names
from jmds_pipeline.models.registry import (
    DEFAULT_MODELS,
    MODELS,
    ModelBuilder,
    build_model,
    default_model_for,
)

__all__ = [
    "DEFAULT_MODELS",
    "MODELS",
    "Classifier",
    "InputNormalisation",
    "ModelBuilder",
    "build_model",
    "default_model_for",
    "is_linear_map",
    "output_layer",
    "prunable_parameter_names",
]
