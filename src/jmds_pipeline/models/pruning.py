"""Which parameters a mask may prune: the weight matrices of the linear maps."""

from __future__ import annotations

from torch import nn

_LINEAR_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)


def is_linear_map(module: nn.Module) -> bool:
    """True for Linear, Conv1d, Conv2d and transformers' ``Conv1D`` (GPT-2's linear layer,
    an addmm with a transposed weight), found by name so transformers is not imported."""
    if isinstance(module, _LINEAR_TYPES):
        return True
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def output_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The model's output layer: the last linear map in registration order (``net.out``,
    ``net.fc``, ``lm.lm_head``: every model of the registry registers its head last)."""
    found = None
    for name, module in model.named_modules():
        if is_linear_map(module):
            found = (name, module)
    return found


def prunable_parameter_names(
    model: nn.Module, include_output_layer: bool = False, include_embeddings: bool = False
) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the weights that masks may prune.

    The weights of Linear/Conv1d/Conv2d/transformers-Conv1D layers; never biases or norm
    parameters. The output layer is left out unless ``include_output_layer`` (pruning the
    classifier removes whole classes' evidence; the usual convention keeps it dense), and
    ``nn.Embedding`` tables unless ``include_embeddings``. A weight shared by two modules
    (GPT-2's ``lm_head`` is tied to ``transformer.wte``) is listed once, under the name
    ``named_parameters`` gives it, if either inclusion rule selects it.
    """
    canonical = {id(parameter): name for name, parameter in model.named_parameters()}
    head = output_layer(model)
    selected: list[str] = []
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter) or id(weight) not in canonical:
            continue
        if head is not None and module is head[1]:
            wanted = include_output_layer
        elif is_linear_map(module):
            wanted = True
        elif isinstance(module, nn.Embedding):
            wanted = include_embeddings
        else:
            wanted = False
        if wanted and canonical[id(weight)] not in selected:
            selected.append(canonical[id(weight)])
    return selected
