"""How many entries each pruning step removes, the checks of a target rate, dead units.

Shared by every method (:mod:`._methods` and the data-driven :mod:`._fair`): the layers a call
prunes, the number of weights (units) still to prune for a cumulative target, the errors when
that target cannot be reached, the masks that make a pruned unit dead, and the warning when a
layer ends empty.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils import prune

from ._masks import mask_of
from ._select import prunable_tensors

Targets = list[tuple[str, nn.Module, str]]


def select_targets(
    module: nn.Module, rate: float, method: str, keep_dense: Iterable[str] | str, structured: bool
) -> Targets:
    """The layers to prune; raises if none is left and ``rate > 0``."""
    targets = prunable_tensors(module, keep_dense=keep_dense, structured=structured)
    if not targets and rate > 0.0:
        raise ValueError(
            f"no prunable layer left in {type(module).__name__} for method={method!r} with "
            f"keep_dense={keep_dense!r}; prunable layers are "
            f"{[name for name, _, _ in prunable_tensors(module)]!r}"
        )
    return targets


def cumulative_error(rate: float, where: str, already: int, size: int) -> ValueError:
    """The error for a ``rate`` below the current sparsity."""
    return ValueError(
        f"rate={rate!r} is below the current sparsity {already / size:.4f} of {where} "
        f"({already} of {size} already pruned); pruning is cumulative and cannot restore "
        "pruned weights (use a rate >= the current sparsity, or start from an unpruned copy)"
    )


def global_target(
    rate: float, min_layer_density: float, total: int, already: int, protected: int
) -> int:
    """Total number of pruned weights for ``rate``, checked against what is already pruned and
    the ``protected`` unpruned weights that ``min_layer_density`` keeps."""
    target = round(rate * total)
    if target < already:
        raise cumulative_error(rate, "the selected layers", already, total)
    if target > total - protected:
        raise ValueError(
            f"min_layer_density={min_layer_density!r} keeps at least {protected} of the "
            f"{total - already} unpruned weights, so rate={rate!r} ({target} of {total} "
            f"weights pruned) cannot be reached; the highest reachable rate is "
            f"{(total - protected) / total:.4f}"
        )
    return target


def layer_plan(
    targets: Targets, rate: float, min_layer_density: float, count
) -> list[tuple[nn.Module, str, int]]:
    """Per layer, how many more entries to prune; raises before anything is modified."""
    plan = []
    for layer, sub, pname in targets:
        size, already = count(sub, pname)
        target = round(rate * size)
        if target < already:
            raise cumulative_error(rate, f"layer {layer!r}", already, size)
        if min_layer_density > 0:
            target = max(already, min(target, size - math.ceil(min_layer_density * size)))
        plan.append((sub, pname, target - already))
    return plan


def count_weights(sub: nn.Module, pname: str) -> tuple[int, int]:
    """``(entries, pruned entries)`` of ``sub.<pname>``."""
    mask = mask_of(sub, pname)
    return mask.numel(), int((mask == 0).sum())


def count_units(sub: nn.Module, pname: str) -> tuple[int, int]:
    """``(output units, pruned units)`` of ``sub.<pname>`` (a unit is pruned when its whole
    row / filter is)."""
    mask = mask_of(sub, pname).flatten(1)
    return mask.shape[0], int((~mask.bool().any(dim=1)).sum())


def mask_units(sub: nn.Module, name: str, alive: torch.Tensor) -> None:
    """Mask the entries of ``sub.<name>`` (a bias or a BatchNorm vector) of dead units."""
    current = mask_of(sub, name)
    prune.custom_from_mask(sub, name, mask=alive.to(device=current.device, dtype=current.dtype))


def kill_dead_units(targets: Targets, norms: dict[str, list[nn.Module]]) -> None:
    """Mask the bias of every unit whose weights are all pruned, and the matching channel of
    the BatchNorm layers in ``norms`` (keyed by layer name), so the unit outputs zero."""
    for layer, sub, pname in targets:
        alive = mask_of(sub, pname).flatten(1).bool().any(dim=1)
        if getattr(sub, "bias", None) is not None:
            mask_units(sub, "bias", alive)
        for bn in norms.get(layer, []):
            if bn.num_features == alive.numel() and bn.affine:
                mask_units(bn, "weight", alive)
                mask_units(bn, "bias", alive)


def warn_emptied(targets: Targets, stacklevel: int) -> None:
    """Warn, naming them, about layers left with all their weights pruned."""
    emptied = [name for name, sub, pname in targets if not bool(mask_of(sub, pname).any())]
    if emptied:
        warnings.warn(
            f"Pruning emptied layer(s) {emptied!r}: all their weights are pruned, so their "
            "outputs no longer depend on their inputs. Keep them dense with "
            f"keep_dense={emptied!r}, or set min_layer_density > 0 (e.g. 0.01) so that every "
            "layer keeps some weights.",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
