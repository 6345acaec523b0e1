"""Pruning of ``torch.nn.Module`` objects: pure functions built on ``torch.nn.utils.prune``.

This package knows nothing about estimators. It prunes the weights of ``nn.Linear`` and
``nn.Conv1d/2d/3d`` layers with torch's reparametrisation (``weight_orig`` + ``weight_mask`` and a
forward pre-hook), so that fine-tuning keeps pruned weights at zero, and offers the helpers that a
pruned module needs: sparsity, copies that survive a forward pass, plain state dicts, making the
masks permanent, and physically compacting a structurally pruned network.

Modules (one concept each; import from ``fairprune_sk.pruning``):

- ``_select``: which tensors are prunable (:func:`prunable_tensors`) and the sklearn
  constraints of the arguments, which every public function checks with ``validate_params``
  (:func:`validate_rate` and :func:`validate_method` check one value for other callers);
- ``_masks``: reading, copying and removing torch's pruning masks (:func:`sparsity`,
  :func:`copy_module`, :func:`effective_state_dict`, :func:`make_permanent`, ...);
- ``_methods``: :func:`prune_module` and the :data:`PRUNING_METHODS`;
- ``_plan``: how many entries each step prunes, the checks of a target rate, dead units;
- ``_saliency``: each group's Taylor estimate of its loss change when a weight is removed
  (:func:`group_taylor_saliency`), from per-group gradients and Fisher diagonals;
- ``_fair``: the group-balanced criterion of the :data:`DATA_DRIVEN_METHODS`
  (:func:`fair_taylor_prune`);
- ``_importance``: the same criterion for whole channels as a Torch-Pruning ``Importance``
  (:class:`GroupBalancedTaylorImportance`);
- ``_graph``: Torch-Pruning's ``DependencyGraph`` of a network (coupled channels, BatchNorm);
- ``_compact``: :func:`compact`, which rebuilds smaller layers after structured pruning.
"""

from ._compact import compact
from ._fair import fair_taylor_prune
from ._importance import GroupBalancedTaylorImportance
from ._masks import (
    copy_module,
    detach_pruned_weights,
    effective_state_dict,
    is_pruned,
    layer_sparsity,
    make_permanent,
    sparsity,
    unpruned_copy,
)
from ._methods import prune_module
from ._saliency import group_taylor_saliency
from ._select import (
    DATA_DRIVEN_METHODS,
    PRUNING_METHODS,
    prunable_tensors,
    validate_method,
    validate_rate,
)

__all__ = [
    "DATA_DRIVEN_METHODS",
    "PRUNING_METHODS",
    "GroupBalancedTaylorImportance",
    "compact",
    "copy_module",
    "detach_pruned_weights",
    "effective_state_dict",
    "fair_taylor_prune",
    "group_taylor_saliency",
    "is_pruned",
    "layer_sparsity",
    "make_permanent",
    "prunable_tensors",
    "prune_module",
    "sparsity",
    "unpruned_copy",
    "validate_method",
    "validate_rate",
]
