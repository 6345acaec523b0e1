"""Net configurations of the benchmark: the model names and their ``net_params``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._validation import check_choice

__all__ = ["MODELS", "DATASET_DEFAULTS", "net_params_for"]

MODELS = ("mlp", "cnn", "resnet18")

#: Training defaults per dataset (used where the caller leaves a setting at None).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "adult": {"max_epochs": 10, "batch_size": 256, "lr": 0.05},
    "fashion_mnist": {"max_epochs": 8, "batch_size": 128, "lr": 0.01},
    "digits": {"max_epochs": 20, "batch_size": 64, "lr": 0.1},
    "utkface": {"max_epochs": 10, "batch_size": 128, "lr": 0.01},
}


def net_params_for(
    model: str,
    *,
    dataset: str = "adult",
    max_epochs: int | None = None,
    fine_tune_epochs: int = 2,
    lr: float | None = None,
    batch_size: int | None = None,
    momentum: float = 0.9,
    pruning_method: str = "global_magnitude",
    hidden_units: Sequence[int] = (64, 64),
    channels: Sequence[int] = (16, 32),
    width: int = 16,
    dual_lr: float | str = "auto",
    dual_update: str | int = "auto",
    constraint_target: str = "group_loss",
    tolerance: float | str = "auto",
    device: str = "cpu",
) -> dict[str, Any]:
    """``net_params`` of :func:`~fairprune_sk.benchmark.runner.run_methods` for a model name.

    Parameters
    ----------
    model : {"mlp", "cnn", "resnet18"}
        :class:`~fairprune_sk.models.MLP` (``hidden_units``),
        :class:`~fairprune_sk.models.SmallCNN` (``channels``) or
        :class:`~fairprune_sk.models.ResNet18` (``width``; 64 is the standard width).
    dataset : str, default="adult"
        Picks the defaults of ``max_epochs``, ``lr`` and ``batch_size`` left at None.
    fine_tune_epochs : int, default=2
        Epochs after pruning, masks held.
    momentum : float, default=0.9
        SGD momentum.
    pruning_method : str, default="global_magnitude"
        One of :data:`fairprune_sk.pruning.PRUNING_METHODS`.
    dual_lr, dual_update, tolerance : float, int or "auto", optional
        Of every :class:`~fairprune_sk.constrained.FairConstrainedNet` method (``fair_*``,
        ``ceag``, ``ceag_heldout``); "auto" resolves per constraint target (see
        docs/mitigation.md).
    constraint_target : str, default="group_loss"
        What the ``fair_*`` methods constrain: ``group_loss`` (the paper's equal group losses),
        ``excess_risk`` or ``accuracy_gap``. ``ceag`` always constrains ``accuracy_gap``.
    device : str, default="cpu"
        skorch device.

    Returns
    -------
    dict
    """
    from ..models import MLP, ResNet18, SmallCNN
    from ..pruning import validate_method

    check_choice(model, "model", MODELS)
    validate_method(pruning_method)
    defaults = DATASET_DEFAULTS.get(dataset, DATASET_DEFAULTS["adult"])
    params: dict[str, Any] = {
        "max_epochs": defaults["max_epochs"] if max_epochs is None else int(max_epochs),
        "lr": defaults["lr"] if lr is None else float(lr),
        "batch_size": defaults["batch_size"] if batch_size is None else int(batch_size),
        "optimizer__momentum": float(momentum),
        "fine_tune_epochs": int(fine_tune_epochs),
        "pruning_method": pruning_method,
        "dual_lr": dual_lr if isinstance(dual_lr, str) else float(dual_lr),
        "dual_update": dual_update,
        "constraint_target": constraint_target,
        "tolerance": tolerance if isinstance(tolerance, str) else float(tolerance),
        "device": device,
        "verbose": 0,
    }
    if model == "mlp":
        params.update(module=MLP, module__hidden_units=tuple(int(h) for h in hidden_units))
    elif model == "cnn":
        params.update(module=SmallCNN, module__channels=tuple(int(c) for c in channels))
    else:
        params.update(module=ResNet18, module__width=int(width))
    return params
