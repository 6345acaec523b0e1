"""Class probabilities of any model the audit accepts, on arrays or on one batch of a stream.

Three kinds of model, told apart by what they are, never by how they were compressed:

- a skorch net (:class:`~fairprune_sk.PrunableNetClassifier`,
  :class:`~fairprune_sk.FairConstrainedNet` or any fitted ``NeuralNetClassifier``):
  ``predict_proba`` on arrays; on a batch of a torch
  ``Dataset``, its ``module_`` called directly, with the net's own output nonlinearity, as
  skorch's ``predict_proba`` applies it;
- any other fitted classifier with ``predict_proba`` and ``classes_`` (sklearn's, a ``Pipeline``);
- a ``torch.nn.Module`` returning logits (pruned by ``torch.nn.utils.prune``, made smaller by
  Torch-Pruning, quantized by ``torch.ao.quantization``: it makes no difference): the softmax of
  its outputs in float64; one output column (or a 1-D output) is the logit of the second of two
  classes, ``[1 − σ(z), σ(z)]``.

A module computes under ``torch.no_grad`` in eval mode; :func:`inference` restores the train /
eval mode of every submodule, and the device of a module it moved, afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["NO_REFERENCE", "Model", "as_model", "common_classes", "inference"]

NO_REFERENCE = (
    "{what} keeps no dense reference; pass reference= (the dense, uncompressed model: one of "
    "our nets, a fitted classifier with predict_proba and classes_, or a torch.nn.Module "
    "returning logits)"
)


def _is_skorch_net(obj: Any) -> bool:
    from skorch import NeuralNet

    return isinstance(obj, NeuralNet)


def _first_tensor(module: nn.Module) -> torch.Tensor | None:
    for tensor in module.parameters():
        return tensor
    for tensor in module.buffers():
        return tensor
    return None


def _module_device(module: nn.Module) -> torch.device:
    tensor = _first_tensor(module)
    return torch.device("cpu") if tensor is None else tensor.device


def _input_dtype(module: nn.Module) -> torch.dtype:
    """The dtype floating inputs are cast to: the module's first floating parameter or buffer,
    torch's default (float32) for a module without any (a dynamically quantized one)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def _as_input(x: Any, module: nn.Module) -> torch.Tensor:
    """A batch as the module's input: a tensor on its device, floating values in its dtype."""
    if not isinstance(x, torch.Tensor):
        array = np.asarray(x)
        if array.dtype == object:
            raise ValueError(
                "a torch module needs numeric inputs; got a batch of Python objects "
                f"(first: {array.flat[0]!r})"
            )
        x = torch.as_tensor(array)
    if x.is_floating_point():
        x = x.to(dtype=_input_dtype(module))
    return x.to(_module_device(module))


def _first_output(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def softmax_proba(logits: torch.Tensor) -> np.ndarray:
    """Class probabilities of logits, in float64 (one logit column: ``[1 − σ(z), σ(z)]``)."""
    logits = logits.detach().to("cpu", torch.float64)
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        positive = torch.sigmoid(logits.reshape(-1, 1))
        return torch.cat([1.0 - positive, positive], dim=1).numpy()
    return torch.softmax(logits.reshape(len(logits), -1), dim=1).numpy()


@dataclass(frozen=True)
class Model:
    """One model of the audit and how to get its class probabilities.

    Attributes
    ----------
    obj : object
        The model as the user gave it.
    role : str
        ``"model"`` or ``"reference"``: how messages name it.
    kind : {"net", "classifier", "module"}
        A skorch net, another fitted classifier, or a torch module returning logits.
    """

    obj: Any
    role: str
    kind: str

    @property
    def classes(self) -> np.ndarray | None:
        """The labels of its probability columns; None for a torch module."""
        return None if self.kind == "module" else np.asarray(self.obj.classes_)

    def describe(self, on: str = "X") -> str:
        """How messages name its probabilities."""
        if self.kind == "module":
            return f"softmax of {self.role}({on})"
        if self.kind == "net" and on != "X":
            return f"{self.role}.module_({on}) through the net's output nonlinearity"
        return f"{self.role}.predict_proba({on})"

    def dense_reference(self) -> Model:
        """The dense reference a model keeps itself (a pruned net of ours), as a model."""
        keeper = getattr(self.obj, "dense_reference", None)
        if self.kind != "net" or keeper is None:
            what = ("a torch.nn.Module" if self.kind == "module"
                    else type(self.obj).__name__)
            raise ValueError(NO_REFERENCE.format(what=what))
        return Model(keeper(), "reference", "net")

    def modules(self) -> list[nn.Module]:
        """The torch modules this model runs (none for a classifier)."""
        if self.kind == "module":
            return [self.obj]
        if self.kind == "net":
            return [self.obj.module_]
        return []

    # ------------------------------------------------------------------------------------------
    def proba_of_array(self, X: Any, batch_size: int) -> np.ndarray:
        """Class probabilities on in-memory data (``predict_proba``, or batches of a module)."""
        if self.kind != "module":
            return self.obj.predict_proba(X)
        if hasattr(X, "to_numpy"):  # a DataFrame
            X = X.to_numpy()
        if not isinstance(X, torch.Tensor):
            X = np.asarray(X)
        parts = [self.proba_of_batch(X[start:start + batch_size])
                 for start in range(0, len(X), batch_size)]
        return np.concatenate(parts) if parts else np.empty((0, 0))

    def proba_of_batch(self, x: Any) -> np.ndarray:
        """Class probabilities of one batch of inputs (a tensor or an array)."""
        if self.kind == "classifier":
            if isinstance(x, torch.Tensor):
                x = x.detach().cpu().numpy()
            return self.obj.predict_proba(x)
        module = self.modules()[0]
        output = _first_output(module(_as_input(x, module)))
        if self.kind == "module":
            return softmax_proba(output)
        # skorch's predict_proba applies this hook to the module's output, then our nets cast
        # to float64 and renormalise; the same here, so both paths give the same numbers
        proba = self.obj._get_predict_nonlinearity()(output)
        proba = proba.detach().to("cpu", torch.float64).numpy()
        return proba / proba.sum(axis=1, keepdims=True)


def as_model(obj: Any, role: str) -> Model:
    """``obj`` as a :class:`Model` of the given role.

    Raises
    ------
    ValueError
        For a classifier without ``classes_`` (it must be fitted), naming ``role``.
    """
    if isinstance(obj, nn.Module):
        return Model(obj, role, "module")
    if _is_skorch_net(obj):
        obj.check_is_fitted()
        return Model(obj, role, "net")
    if not hasattr(obj, "classes_"):
        raise ValueError(
            f"{role} ({type(obj).__name__}) has predict_proba but no classes_: pass a fitted "
            "classifier, or a torch.nn.Module returning logits"
        )
    return Model(obj, role, "classifier")


@contextlib.contextmanager
def inference(models: list[Model], device: Any = None) -> Iterator[None]:
    """Run the models' torch modules in eval mode without gradients, then restore them.

    Parameters
    ----------
    models : list of Model
    device : str, torch.device or None
        Where the plain torch modules compute (they are moved there and back); None: where
        they are. Skorch nets compute on their own ``device``.
    """
    modes: list[tuple[nn.Module, bool]] = []
    moved: list[tuple[nn.Module, torch.device]] = []
    try:
        for model in models:
            for module in model.modules():
                modes += [(sub, sub.training) for sub in module.modules()]
                if model.kind == "module" and device is not None:
                    here = _module_device(module)
                    if here != torch.device(device):
                        moved.append((module, here))
                        module.to(device)
                module.eval()
        with torch.no_grad():
            yield
    finally:
        for module, here in moved:
            module.to(here)
        for sub, training in modes:
            sub.train(training)


def common_classes(
    pruned: Model, dense: Model, classes: Any
) -> tuple[np.ndarray | None, str]:
    """The labels of both models' probability columns, and how messages name them.

    None when neither model has ``classes_`` and ``classes`` is None: then ``0 .. K-1``.
    """
    known = [m for m in (pruned, dense) if m.classes is not None]
    if classes is not None:
        classes = np.asarray(classes)
        if classes.ndim != 1 or pd.Index(classes).has_duplicates:
            raise ValueError(
                f"classes must be 1-D distinct labels, one per probability column; got "
                f"{classes.tolist()}"
            )
        for m in known:
            if not np.array_equal(m.classes, classes):
                raise ValueError(
                    f"classes {classes.tolist()} differ from {m.role}.classes_ "
                    f"{m.classes.tolist()}; leave classes=None to use {m.role}.classes_"
                )
        return classes, "classes"
    if not known:
        return None, "classes (default 0..K-1 for the K outputs of a torch module)"
    first = known[0]
    for m in known[1:]:
        if not np.array_equal(m.classes, first.classes):
            raise ValueError(
                f"{m.role}.classes_ {m.classes.tolist()} differ from {first.role}.classes_ "
                f"{first.classes.tolist()}"
            )
    return first.classes, f"{first.role}.classes_"
