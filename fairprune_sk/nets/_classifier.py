"""PrunableNetClassifier: a skorch ``NeuralNetClassifier`` with a pruning lifecycle.

``fit`` trains the dense net θ*; when ``pruning_rate > 0`` it then prunes (one shot or in
``pruning_steps`` iterative steps) and fine-tunes with the masks held, so ``GridSearchCV`` can
search over ``pruning_rate``. ``prune`` prunes a fitted net in place and keeps the dense weights
θ* as a plain ``state_dict`` (``dense_state_dict_``), which is what the excess risk
``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2) is measured against.

A pretrained module (an instance, with ``classes``) needs no ``fit``: ``initialize()`` makes the
net fitted, θ* is the module's weights at the first prune (``weight_orig`` for a module that
torch prune already reparametrised), or the weights of ``reference_module`` for a module of
another structure. Data may be arrays or a torch ``Dataset`` / ``DataLoader``, streamed batch by
batch (:mod:`._stream`).
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, column_or_1d, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring
from skorch.dataset import Dataset
from skorch.utils import to_tensor
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
)

from .. import pruning, quantization
from .._validation import check_args, check_int, check_params, torch_seed
from ..metrics import encode_labels, group_codes
from ..metrics._stream import is_stream
from ..pruning._masks import check_not_quantized
from ..quantization._grid import BITS
from ..quantization._layers import ACTIVATIONS
from ._callbacks import PruningLog, TerminalPrintLog, index_accuracy
from ._data import INPUT_KEY, SAMPLE_WEIGHT_KEY
from ._persistence import match_pruning
from ._state import clone_state, copy_callbacks, copy_history, original_state_dict
from ._stream import SHUFFLING_LOADER, NetStream, stream_of

__all__ = ["NOT_TRAINABLE", "PRUNING_SCHEDULES", "PrunableNetClassifier"]

PRUNING_SCHEDULES = ("one_shot", "iterative")

NOT_TRAINABLE = (
    "{name} cannot {action}: its module has {what} (a quantized module, e.g. from "
    "torch.ao.quantization.quantize_dynamic, has no float weights); it can be audited "
    "(predict_proba, ExcessRiskFrame) but not trained or pruned. Prune and fine-tune the float "
    "module, then quantize it"
)


def _quantized_layers(module: nn.Module) -> list[str]:
    """Qualified names of the outermost submodules of torch's quantized kinds (int8 kernels)."""
    names: list[str] = []
    for name, sub in module.named_modules():
        kind = type(sub).__module__
        inside = any(name.startswith(f"{outer}.") for outer in names)
        if kind.startswith("torch.") and ".quantized" in kind and not inside:
            names.append(name)
    return names


def _first_layer(module: nn.Module) -> nn.Module:
    """The layer a module applies first, where its structure says so: the first child of a
    ``Sequential``, or the only child of a wrapper, followed down to a layer with
    ``in_features`` or a leaf."""
    while True:
        children = list(module.children())
        if isinstance(module, nn.Sequential) and children:
            module = children[0]
        elif len(children) == 1 and not hasattr(module, "in_features"):
            module = children[0]
        else:
            return module


class _BatchIndexedDataset(Dataset):
    """skorch's ``Dataset`` of in-memory arrays, indexed by a whole batch of positions at once.

    skorch indexes a batch of positions through sklearn's ``_safe_indexing``, which checks the
    positions one by one; here one numpy gather per array (X, each per-sample array of a dict
    X, and y) makes the batch.
    """

    def __getitem__(self, i: Any) -> tuple[Any, Any]:
        index = np.asarray(i)
        X = self.X
        X = {key: value[index] for key, value in X.items()} if isinstance(X, Mapping) else X[index]
        return self.transform(X, None if self.y is None else self.y[index])


class PrunableNetClassifier(NeuralNetClassifier):
    """A skorch classifier that can be pruned, audited and fine-tuned with its masks held.

    Parameters
    ----------
    module : torch.nn.Module class or instance
        Outputs logits. Constructor arguments named ``n_features``, ``n_classes`` and
        ``input_shape`` are filled in from the data at ``fit`` unless given as ``module__*``.
    criterion : loss class, default=torch.nn.CrossEntropyLoss
        Must accept ``reduction="none"`` (all torch losses do).
    train_split : callable or None, default=None
        skorch's internal validation split; None (no hidden hold-out) suits ``GridSearchCV``.
    pruning_rate : float in [0, 1), default=0.0
        Fraction of prunable weights ``fit`` removes after dense training; 0 = no pruning.
    pruning_method : str, default="global_magnitude"
        One of :data:`fairprune_sk.pruning.PRUNING_METHODS`.
    pruning_schedule : {"one_shot", "iterative"}, default="one_shot"
        ``iterative`` reaches ``pruning_rate`` in ``pruning_steps`` steps, removing the same
        fraction of the remaining weights each step, with ``fine_tune_epochs`` between steps.
    pruning_steps : int, default=3
        Number of steps of the iterative schedule.
    fine_tune_epochs : int, default=0
        Epochs of training with the masks held after each pruning step in ``fit``, and after
        quantizing (``quantization_bits``).
    quantization_bits : int in [2, 8] or None, default=None
        ``fit`` then puts the weights on a symmetric ``quantization_bits``-bit grid per output
        channel (:meth:`quantize`, after any pruning) and fine-tunes ``fine_tune_epochs``
        quantization-aware; θ* stays the dense float net. None: no quantization.
    keep_dense : tuple of str, default=()
        Layers never pruned: qualified module names, or ``"first"`` / ``"last"``.
    min_layer_density : float in [0, 1], default=0.0
        Global magnitude pruning keeps at least this fraction of every layer.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, batch shuffling and random pruning; the global torch RNG
        state is restored afterwards. A ``train_split`` such as ``ValidSplit(0.2)`` has its own
        ``random_state``: set it too for a reproducible validation split.
    reference_module : torch.nn.Module or None, default=None
        The dense reference θ* as a module, for a ``module`` of another structure (one made
        smaller by Torch-Pruning, say): it takes the same inputs and has the same outputs.
        ``initialize`` (and so ``fit``) keeps a copy of its weights as ``dense_state_dict_``;
        the audit and the fine-tuning of :class:`~fairprune_sk.FairConstrainedNet` then compare
        this net with it. None: θ* is the module's own weights at the first prune.
    **kwargs
        Every other skorch parameter (``max_epochs``, ``lr``, ``batch_size``,
        ``module__hidden_units``, ``optimizer``, ``callbacks``, ``device``, ...). Unlike skorch,
        ``iterator_train__shuffle`` defaults to True: batches are reshuffled every epoch, as in
        sklearn's ``MLPClassifier`` (unshuffled, sorted data give one-group batches).
        Also unlike skorch, ``verbose`` defaults to 0: no per-epoch table, so a
        ``GridSearchCV`` or a fairlearn reduction that fits many nets is quiet; ``verbose=1``
        prints skorch's table (colours only on a terminal, see :class:`TerminalPrintLog`).

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained (and possibly pruned, via ``torch.nn.utils.prune`` masks) module.
    dense_state_dict_ : dict of str to Tensor or None
        The dense weights θ* (plain tensors on CPU): kept by the first pruning, taken from
        ``weight_orig`` of a module given with torch prune masks, or from ``reference_module``;
        None while there is none.
    sparsity_ : float
        Achieved fraction of prunable weights that are zero (on a quantized net, a weight
        rounded to the grid's zero counts).
    quantized_bits_ : int or None
        Width of the weight grid after :meth:`quantize`; None for a float net (for a module
        given with layers on grids of several widths, the largest).
    activation_bits_ : int or None
        Width of the layers' input grid (``quantize(bits, activations=...)``); None when
        the inputs stay in float.
    phase_ : {"train", "fine_tune"}
        What the epochs being run are: dense training, or fine-tuning with the masks held
        (recorded as ``phase`` in ``history``; "train" between runs).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit`` (the ``classes`` parameter when given).
    n_features_in_ : int
        Number of features seen in ``fit``; after ``initialize()`` with a module instance, the
        ``in_features`` of its first layer where its structure tells (a ``Sequential``, or a
        wrapper of one, starting with a ``Linear``), else not set.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk import PrunableNetClassifier
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
    >>> net = PrunableNetClassifier(MLP, max_epochs=2, lr=0.05, random_state=0)
    >>> round(net.fit(X, y).prune(0.8).sparsity_, 2)
    0.8
    >>> net.dense_reference().sparsity_
    0.0
    >>> net.fine_tune(X, y, epochs=1).history[-1, "phase"]
    'fine_tune'
    """

    _parameter_constraints: dict = {
        "pruning_rate": [Interval(Real, 0.0, 1.0, closed="left")],
        "pruning_method": [StrOptions(set(pruning.PRUNING_METHODS))],
        "pruning_schedule": [StrOptions(set(PRUNING_SCHEDULES))],
        "pruning_steps": [Interval(Integral, 1, None, closed="left")],
        "fine_tune_epochs": [Interval(Integral, 0, None, closed="left")],
        "keep_dense": [tuple, list],
        "min_layer_density": [Interval(Real, 0.0, 1.0, closed="both")],
        "random_state": ["random_state"],
        "reference_module": [nn.Module, None],
        "quantization_bits": [Interval(Integral, 2, 8, closed="both"), None],
    }

    def __init__(
        self,
        module: Any,
        *,
        criterion: Any = nn.CrossEntropyLoss,
        train_split: Any = None,
        pruning_rate: float = 0.0,
        pruning_method: str = "global_magnitude",
        pruning_schedule: str = "one_shot",
        pruning_steps: int = 3,
        fine_tune_epochs: int = 0,
        keep_dense: tuple[str, ...] = (),
        min_layer_density: float = 0.0,
        random_state: Any = None,
        reference_module: nn.Module | None = None,
        quantization_bits: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("iterator_train__shuffle", True)  # SGD on shuffled batches
        kwargs.setdefault("verbose", 0)  # quiet inside GridSearchCV and fairlearn's reductions
        super().__init__(module, criterion=criterion, train_split=train_split, **kwargs)
        self.pruning_rate = pruning_rate
        self.pruning_method = pruning_method
        self.pruning_schedule = pruning_schedule
        self.pruning_steps = pruning_steps
        self.fine_tune_epochs = fine_tune_epochs
        self.keep_dense = keep_dense
        self.min_layer_density = min_layer_density
        self.random_state = random_state
        self.reference_module = reference_module
        self.quantization_bits = quantization_bits

    def __setattr__(self, name: str, value: Any) -> None:
        # a parameter skorch must not take for a component it trains: skorch registers every
        # module set on a net (its parameters would join the optimizer's)
        if name == "reference_module":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    # ------------------------------------------------------------------------------------------
    # sklearn / skorch plumbing
    # ------------------------------------------------------------------------------------------
    @property
    def _default_callbacks(self) -> list:
        callbacks = dict(super()._default_callbacks)
        # valid_acc on the label-encoded internal data; the phase/sparsity log before printing
        callbacks["valid_acc"] = EpochScoring(
            index_accuracy, name="valid_acc", lower_is_better=False
        )
        callbacks.pop("print_log")  # ours: ANSI colours only on a terminal
        return [*callbacks.items(), ("pruning_log", PruningLog()),
                ("print_log", TerminalPrintLog())]

    def _get_param_names(self) -> list[str]:
        """skorch's parameter names, less its ``_params_to_validate`` bookkeeping.

        skorch 1.4 lists that private set among the parameters (sklearn's ``check_set_params``
        rejects it). Nothing else private lives on the net: the dual state of
        :class:`~fairprune_sk.FairConstrainedNet` is owned by its callback.
        """
        return [name for name in super()._get_param_names() if name != "_params_to_validate"]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _validate_own_params(self) -> None:
        """Check the parameters this class adds (skorch validates only its own)."""
        check_params(self)

    def initialize_module(self) -> Self:
        """Build ``module_``, filling ``n_features``/``n_classes``/``input_shape`` from the data."""
        kwargs = self.get_params_for("module")
        if not isinstance(self.module, nn.Module):
            accepted = inspect.signature(self.module).parameters
            for name, value in self._inferred_module_kwargs().items():
                if name in accepted and name not in kwargs:
                    kwargs[name] = value
        self.module_ = self.initialized_instance(self.module, kwargs)
        return self

    def initialize(self) -> Self:
        """skorch's ``initialize``, then the fitted state of the module as it is.

        With a module instance and ``classes``, the net is then fitted (``check_is_fitted``
        passes): it predicts, prunes, fine-tunes and is audited without a ``fit``. A module
        carrying torch prune masks keeps them (``sparsity_`` counts them) and gives θ* from its
        ``weight_orig``; ``reference_module`` gives θ* from its own weights. A module without
        float parameters (a quantized one) gets no optimizer: it predicts, but training or
        pruning it raises a ``ValueError`` that says so.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from torch import nn
        >>> from fairprune_sk import PrunableNetClassifier
        >>> module = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> net = PrunableNetClassifier(module, classes=["no", "yes"]).initialize()
        >>> net.n_features_in_, net.predict(np.zeros((1, 4))).shape
        (4, (1,))
        >>> round(net.prune(0.5).sparsity_, 2), net.dense_reference().sparsity_
        (0.5, 0.0)
        """
        super().initialize()
        module = self.module_
        pruning.detach_pruned_weights(module)
        if self.reference_module is not None:
            self.dense_state_dict_ = pruning.effective_state_dict(self.reference_module)
        elif pruning.is_pruned(module):
            self.dense_state_dict_ = original_state_dict(module)
        else:
            self.dense_state_dict_ = None
        self.sparsity_ = float(pruning.sparsity(module))
        self._record_quantization()
        self.phase_ = "train"
        first = _first_layer(module)
        in_features = getattr(first, "in_features", None)
        if (isinstance(self.module, nn.Module) and not hasattr(self, "n_features_in_")
                and isinstance(in_features, int)):
            self.n_features_in_ = in_features
            self.input_shape_ = (in_features,)
        return self

    def initialize_optimizer(self, *args: Any, **kwargs: Any) -> Self:
        """skorch's optimizer; none (``optimizer_ = None``) for a module without parameters
        (a quantized one), which is audited but never trained."""
        if next(iter(self.get_all_learnable_params()), None) is None:
            if "optimizer" not in self.prefixes_:  # registered as skorch registers an optimizer,
                self._register_attribute("optimizer_", None)  # so a copy may build a real one
            self.optimizer_ = None
            return self
        return super().initialize_optimizer(*args, **kwargs)

    def _check_trainable(self, action: str, module: Any = None) -> None:
        """Raise the ``NOT_TRAINABLE`` error if ``module`` (``module_`` by default) has no float
        weights to train or prune."""
        module = self.module_ if module is None else module
        if not isinstance(module, nn.Module):
            return
        quantized = _quantized_layers(module)
        if quantized:
            what = f"quantized layers {quantized[:3]}"
        elif next(iter(module.parameters()), None) is None:
            what = "no parameters"
        else:
            return
        raise ValueError(NOT_TRAINABLE.format(name=type(self).__name__, action=action, what=what))

    def _inferred_module_kwargs(self) -> dict[str, Any]:
        inferred = {}
        if hasattr(self, "n_features_in_"):
            inferred["n_features"] = self.n_features_in_
            inferred["input_shape"] = self.input_shape_
        if hasattr(self, "classes_inferred_") or self.classes is not None:
            inferred["n_classes"] = len(self.classes_)
        return inferred

    # ------------------------------------------------------------------------------------------
    # skorch hooks: criterion, loss, batches
    # ------------------------------------------------------------------------------------------
    def initialize_criterion(self) -> Self:
        """Build ``criterion_`` with ``reduction="none"``: one loss per sample, always.

        :meth:`get_loss` takes their (sample-weighted) mean, and the constrained net reuses the
        same per-sample losses for its group terms, so the criterion runs once per batch (as
        skorch's FAQ does for sample weights). A criterion instance whose reduction is not
        ``"none"`` is copied with ``reduction="none"``; the user's object is left as it is.

        Raises
        ------
        ValueError
            If ``criterion__reduction`` is set to anything but ``"none"``.
        """
        kwargs = self.get_params_for("criterion")
        reduction = kwargs.pop("reduction", "none")
        if reduction != "none":
            raise ValueError(
                f"criterion__reduction must be 'none' (got {reduction!r}): the criterion gives "
                "one loss per sample and get_loss takes their (sample-weighted) mean"
            )
        if isinstance(self.criterion, nn.Module) and not kwargs:
            criterion = self.criterion
            if getattr(criterion, "reduction", "none") != "none":
                criterion = copy.deepcopy(criterion)
                criterion.reduction = "none"
        else:
            criterion = self.initialized_instance(self.criterion, {**kwargs, "reduction": "none"})
        self.criterion_ = criterion
        return self

    def per_sample_loss(self, y_pred: torch.Tensor, y_true: Any) -> torch.Tensor:
        """The criterion on the batch: one loss per sample (``reduction="none"``)."""
        return super().get_loss(y_pred, y_true)

    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Mean loss, weighted by the batch's ``sample_weight`` when the data carry one."""
        return self._mean_loss(self.per_sample_loss(y_pred, y_true), y_true, X)

    def _mean_loss(self, losses: torch.Tensor, y_true: Any, X: Any) -> torch.Tensor:
        """The batch loss from the per-sample ``losses``: their mean, weighted by the batch's
        ``sample_weight``; without one, what the criterion's ``reduction="mean"`` gives (for
        torch's cross-entropy / NLL with class ``weight``: divided by the batch's total class
        weight)."""
        weight = X.get(SAMPLE_WEIGHT_KEY) if isinstance(X, Mapping) else None
        if weight is not None:
            return (losses * to_tensor(weight, device=losses.device)).mean()
        criterion = self.criterion_
        class_weight = getattr(criterion, "weight", None)
        if class_weight is None or not isinstance(criterion, nn.CrossEntropyLoss | nn.NLLLoss):
            return losses.mean()
        y = to_tensor(y_true, device=class_weight.device)
        if y.is_floating_point():  # class probabilities: torch's mean is over the batch
            return losses.mean()
        y = y[y != criterion.ignore_index]
        return losses.sum() / class_weight[y].sum().to(losses.device)

    def get_dataset(self, X: Any, y: Any = None) -> Any:
        """skorch's ``Dataset`` of validated in-memory arrays, indexed a batch at a time
        (:class:`_BatchIndexedDataset`); a user's ``Dataset`` or dataset class is used as is."""
        arrays = X.values() if isinstance(X, Mapping) else [X]
        if self.dataset is not Dataset or not all(isinstance(a, np.ndarray) for a in arrays):
            return super().get_dataset(X, y)
        return _BatchIndexedDataset(X, y, **self.get_params_for("dataset"))

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """skorch's ``DataLoader``, fed whole batches of indices instead of one index at a time.

        A :class:`_BatchIndexedDataset` then gathers each batch in one numpy call per array;
        sample by sample, skorch's loader makes an epoch of Adult's MLP (64, 64) about 4x a
        bare torch loop at batch 256 (``benchmarks/bench_speed.py`` prints the ratio). The
        batches, and the draws from torch's RNG, are those of ``DataLoader(dataset,
        batch_size, shuffle, drop_last)``. Any other iterator, sampler or collate function
        takes skorch's path unchanged. The user's ``Dataset`` is batched by skorch's iterator
        with the ``iterator_*`` parameters; a ``DataLoader`` is iterated as it is
        (:class:`~fairprune_sk.nets._stream.NetStream`).
        """
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        stream = stream_of(dataset)
        if stream is not None:
            kwargs.setdefault("batch_size", self.batch_size)
            if kwargs["batch_size"] == -1:
                kwargs["batch_size"] = len(dataset)
            return stream.iterator(dataset, iterator, kwargs)
        if iterator is not DataLoader or {"sampler", "batch_sampler", "collate_fn"} & set(kwargs):
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        batch_size = len(dataset) if batch_size == -1 else batch_size
        order = RandomSampler(dataset) if kwargs.pop("shuffle", False) else SequentialSampler(
            dataset
        )
        batches = BatchSampler(order, batch_size, drop_last=kwargs.pop("drop_last", False))
        return DataLoader(dataset, batch_size=None, sampler=batches, **kwargs)

    def check_data(self, X: Any, y: Any) -> None:
        """Data are validated by ``fit`` / ``partial_fit`` before they reach skorch."""

    def infer(self, x: Any, **fit_params: Any) -> torch.Tensor:
        """Forward a batch; per-sample metadata riding along in a dict batch is left out."""
        if isinstance(x, Mapping) and INPUT_KEY in x:
            x = x[INPUT_KEY]
        return super().infer(x, **fit_params)

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray | NetStream:
        if is_stream(X):
            stream = self._stream(X)
            if stream.shuffles:
                raise ValueError(SHUFFLING_LOADER.format(what="the predictions"))
            return stream
        return validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)

    def _stream(self, X: Any, **params: Any) -> NetStream:
        """``X`` (a ``Dataset`` or ``DataLoader``) as a :class:`NetStream`: its passes outside
        skorch's loop take the batch size and ``collate_fn`` of ``iterator_valid``."""
        loader = self.get_params_for("iterator_valid")
        batch_size = loader.get("batch_size", self.batch_size)
        return NetStream(X, batch_size=batch_size if batch_size > 0 else 1024,
                         collate=loader.get("collate_fn"), **params)

    def _validate_training_data(
        self,
        X: Any,
        y: Any,
        *,
        reset: bool,
        classes: Any = None,
        aligned: bool = False,
        fields: tuple[str, ...] = (),
    ) -> tuple[np.ndarray | NetStream, np.ndarray | None, np.ndarray]:
        """Validate X and y; return float32 X, encoded y and the classes (nothing is stored).

        ``classes`` is ``partial_fit``'s argument: read before any check on y, so a first batch
        holding one class only trains when ``classes`` names them all. A torch ``Dataset`` or
        ``DataLoader`` X comes back as a :class:`NetStream` (see :meth:`_validate_stream`).
        """
        if is_stream(X):
            return self._validate_stream(X, y, reset=reset, classes=classes, aligned=aligned,
                                         fields=fields)
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True)
        check_classification_targets(y)
        classes = self._training_classes(y, reset=reset, given=classes)
        return X, encode_labels(y, classes), classes

    def _validate_stream(
        self,
        X: Any,
        y: Any,
        *,
        reset: bool,
        classes: Any,
        aligned: bool,
        fields: tuple[str, ...],
    ) -> tuple[NetStream, np.ndarray | None, np.ndarray]:
        """A ``Dataset`` / ``DataLoader`` as training data: its stream, encoded labels, classes.

        The labels are ``y`` (aligned with the data), else the items' own, encoded batch by
        batch. One pass over the items reads their labels first when the classes are not
        known (``classes_``, the ``classes`` parameter, or ``partial_fit``'s) or when
        ``aligned`` asks for every sample's label up front, and the values of ``fields`` (left
        in the stream's ``item_fields``). ``aligned`` also refuses a shuffling ``DataLoader``.
        With ``reset``, ``n_features_in_`` is set from the first input's shape.
        """
        stream = self._stream(X)
        if stream.is_loader and self.train_split:
            raise ValueError(
                "X is a DataLoader, which train_split cannot split: pass its Dataset, or set "
                "train_split=None"
            )
        if aligned and stream.shuffles:
            raise ValueError(SHUFFLING_LOADER.format(
                what=f"the per-sample groups of {type(self).__name__}"))
        labels = None if y is None else column_or_1d(y, warn=True)
        known = not reset or self.classes is not None or classes is not None
        read_labels = labels is None and (aligned or not known)
        if read_labels or fields:
            found, stream.item_fields = stream.read(labels=read_labels, fields=tuple(fields))
            labels = found if read_labels else labels
        if labels is not None:
            check_classification_targets(labels)
        classes = self._training_classes(labels, reset=reset, given=classes)
        y_index = None
        if labels is not None and not stream.shuffles:
            y_index = encode_labels(labels, classes)
        elif labels is not None:
            encode_labels(labels, classes)  # unknown labels are an error before training
        trained = self._stream(X, classes=classes, y_index=y_index)
        trained.item_fields, trained.n_samples = stream.item_fields, stream.n_samples
        if reset:
            shape = trained.input_shape()
            self.n_features_in_ = shape[0] if shape else 1
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        return trained, y_index, classes

    def _training_classes(self, y: np.ndarray | None, *, reset: bool, given: Any) -> np.ndarray:
        """The classes to encode y with: ``classes_`` once fitted, else the ``classes``
        parameter (in its own order, sorted or not), else ``partial_fit``'s ``classes``
        (sorted, as sklearn's ``partial_fit``), else the labels of y."""
        if given is not None:
            given = np.unique(np.asarray(given))
        if not reset:
            classes = np.asarray(self.classes_)
        elif self.classes is not None:
            classes = np.asarray(self.classes)
            if len(np.unique(classes)) != len(classes):
                raise ValueError(f"classes has duplicate labels: {classes.tolist()}")
        elif given is not None:
            classes = given
        else:
            classes = np.unique(y)
        if given is not None and not np.array_equal(np.unique(classes), given):
            raise ValueError(
                f"classes={given.tolist()} differs from the classes of this net "
                f"{classes.tolist()}; pass the same classes (or none)"
            )
        if len(classes) < 2:
            raise ValueError(
                "Classifier can't train when only one class is present; "
                f"y has the single class {classes.tolist()}"
            )
        return classes

    def _check_sample_weight(self, sample_weight: Any, X: Any) -> np.ndarray | None:
        """Normalise weights to mean 1 so the loss scale (and lr) does not depend on them."""
        if sample_weight is None:
            return None
        if isinstance(X, NetStream):  # one weight per item, in the data's order
            X = np.empty((len(X), 0))
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = weight.sum()
        if total <= 0:
            raise ValueError(
                "sample_weight sums to zero; at least one sample needs a positive weight"
            )
        if np.all(weight == weight[0]):
            return None  # uniform weights: exactly the unweighted loss
        return (weight * (len(weight) / total)).astype(np.float32)

    def _training_input(self, X: np.ndarray | NetStream, **per_sample: np.ndarray | None) -> Any:
        """X as skorch will batch it: a dict when per-sample metadata must travel with it (a
        stream adds them to its batches)."""
        if isinstance(X, NetStream):
            return X.with_arrays(**per_sample)
        extras = {key: value for key, value in per_sample.items() if value is not None}
        if not extras:
            return X
        return {INPUT_KEY: X, **extras}

    # ------------------------------------------------------------------------------------------
    # seeding, transactions, copies
    # ------------------------------------------------------------------------------------------
    @contextmanager
    def _seeded(self, offset: int = 0) -> Iterator[None]:
        """Seed torch from ``random_state`` and restore the caller's RNG state afterwards."""
        seed = torch_seed(self.random_state, offset)
        if seed is None:
            yield
            return
        devices = [] if str(self.device).startswith("cpu") else None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    def _trains_in_place(self) -> bool:
        """Whether ``fit`` will train existing torch objects (warm start, a module instance)."""
        return bool(self.warm_start) or isinstance(self.module, nn.Module)

    def _torch_state_objects(self) -> list[Any]:
        """The modules, criteria and optimizers that training changes in place (no duplicates)."""
        names = [f"{name}_" for name in (*self._modules, *self._criteria, *self._optimizers)]
        objects = [getattr(self, name, None) for name in names]
        if isinstance(self.module, nn.Module):
            objects.append(self.module)  # trained in place when it is module_ itself
        unique = {id(obj): obj for obj in objects if hasattr(obj, "state_dict")}
        return list(unique.values())

    @contextmanager
    def _transaction(self, *, in_place: bool) -> Iterator[None]:
        """Restore the estimator's state if the block raises (a failed fit changes nothing).

        The attributes are restored from a shallow copy of ``__dict__`` (new objects built in
        the block are dropped; the user's callback objects are the same objects). What the
        block may change *in place* is snapshotted on its own, and only with ``in_place``
        (warm starts, ``partial_fit``, a module instance): the state dicts of the modules,
        criteria and optimizers (cloned tensors) and the length of the history. Nothing else
        is copied, so callbacks holding locks or writers (loggers) are never copied.
        """
        saved = dict(self.__dict__)
        states = []
        if in_place:
            for obj in self._torch_state_objects():
                states.append((obj, clone_state(obj.state_dict())))
        history = saved.get("history_")
        n_rows = len(history) if history is not None else 0
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            for obj, state in states:
                obj.load_state_dict(state)
            if history is not None:
                del history[n_rows:]
            if hasattr(self, "module_"):
                pruning.detach_pruned_weights(self.module_)
            raise

    def _sibling(self, module: nn.Module) -> Self:
        """A fitted estimator like this one, with its own ``module``, and no mutable state shared.

        Parameters and fitted attributes are carried over; the history rows, the callbacks
        (:func:`~fairprune_sk.nets._state.copy_callbacks`) and every fitted attribute a training
        run changes in place (:meth:`_copied_fitted_state`) are copies, and the optimizer is
        new, so training the sibling never changes this net.
        """
        sibling = object.__new__(type(self))
        sibling.__dict__.update(self.__dict__)
        for registry in ("_modules", "_criteria", "_optimizers"):
            if registry in self.__dict__:
                setattr(sibling, registry, list(self.__dict__[registry]))
        sibling.__dict__.update(self._copied_fitted_state())
        sibling.module_ = module
        sibling.criterion_ = copy.deepcopy(self.criterion_)
        sibling.callbacks_ = copy_callbacks(self.callbacks_)
        sibling.history_ = copy_history(self.history_)
        sibling.initialize_optimizer()
        return sibling

    def _copied_fitted_state(self) -> dict[str, Any]:
        """Copies of the fitted attributes that training changes in place (none here)."""
        return {}

    # ------------------------------------------------------------------------------------------
    # fit / partial_fit
    # ------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Train the dense net; if ``pruning_rate > 0``, prune and fine-tune it; with
        ``quantization_bits``, then quantize it and fine-tune it quantization-aware.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W), or a torch \
                Dataset or DataLoader
            Training data (numpy, pandas or anything ``check_array`` takes); cast to float32.
            A torch ``Dataset`` (items ``(x, y)``, ``x`` alone, or dicts with the input under
            ``"X"`` and the label under ``"y"``) is streamed batch by batch by skorch's
            iterator (``batch_size``, ``iterator_train__*``); a ``DataLoader`` is iterated as
            it is. Floating inputs are cast to float32.
        y : array-like of shape (n_samples,) or None
            Class labels of any type. None with a ``Dataset``: the items' labels. The classes
            are then the ``classes`` parameter, or read in one pass over the items' labels
            before training.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative per-sample weights of the loss (normalised to mean 1; uniform weights
            give exactly the unweighted result). They travel inside the dataset, so batches and
            the validation split slice them with X. With a ``Dataset``: one weight per item,
            in its order (a ``DataLoader`` that shuffles cannot take aligned arrays).

        Returns
        -------
        self
        """
        self._validate_own_params()
        self._check_trainable("fit", self.module)
        with self._transaction(in_place=self._trains_in_place()):
            X_arr, y_index, classes = self._validate_training_data(X, y, reset=True)
            weight = self._check_sample_weight(sample_weight, X_arr)
            self._fit_validated(X_arr, y_index, classes, sample_weight=weight)
        return self

    @staticmethod
    def _input_shape(X: np.ndarray | NetStream) -> tuple[int, ...]:
        """The shape of one sample of validated data."""
        return X.input_shape() if isinstance(X, NetStream) else tuple(X.shape[1:])

    def _fit_validated(
        self, X: np.ndarray, y_index: np.ndarray, classes: np.ndarray, **per_sample
    ) -> None:
        """Dense training, then the pruning schedule; inputs are already validated. A
        data-driven ``pruning_method`` ranks the weights on the training rows and their groups
        (``per_sample["group"]``; one group without)."""
        if (self.pruning_rate > 0 and self.pruning_method in pruning.DATA_DRIVEN_METHODS
                and isinstance(X, NetStream)):
            raise ValueError(
                f"pruning_method={self.pruning_method!r} ranks the weights on in-memory rows: "
                "fit on arrays, or fit with pruning_rate=0 and call prune(rate, X=, y=) on "
                "a sample of the rows"
            )
        self.classes_inferred_ = classes
        self.input_shape_ = self._input_shape(X)
        data = self._training_input(X, **per_sample)
        with self._seeded():
            if not (self.warm_start and self.initialized_):
                self.initialize()
            self._check_trainable("fit")
            pruning.prunable_tensors(self.module_, keep_dense=tuple(self.keep_dense))
            self.sparsity_ = float(pruning.sparsity(self.module_))
            self.phase_ = "train"
            super().partial_fit(data, y_index, _routing_method="fit")
            if self.pruning_rate > 0 or self.quantization_bits is not None:
                data = self._fine_tuning_input(data, y_index)
            if self.pruning_rate > 0:
                prune_data = None
                if self.pruning_method in pruning.DATA_DRIVEN_METHODS:  # the training rows
                    prune_data = self._data_for_pruning(X, y_index, per_sample.get("group"))
                for rate in self._schedule_rates():
                    self._prune_in_place(rate, self.pruning_method, prune_data)
                    self._train_epochs(data, y_index, self.fine_tune_epochs, phase="fine_tune")
            if self.quantization_bits is not None:
                self._quantize_in_place(int(self.quantization_bits))
                self._train_epochs(data, y_index, self.fine_tune_epochs, phase="fine_tune")
            pruning.detach_pruned_weights(self.module_)

    def _fine_tuning_input(self, data: Any, y_index: np.ndarray) -> Any:
        """Hook: the training input of the fine-tuning epochs (subclasses add per-sample data)."""
        return data

    def _schedule_rates(self) -> list[float]:
        """Cumulative target rates: one shot, or the same fraction of the rest each step."""
        if self.pruning_schedule == "one_shot":
            return [float(self.pruning_rate)]
        keep = 1.0 - float(self.pruning_rate)
        steps = int(self.pruning_steps)
        return [1.0 - keep ** (k / steps) for k in range(1, steps + 1)]

    def _train_epochs(self, data: Any, y_index: np.ndarray, epochs: int, phase: str) -> None:
        """Run ``epochs`` epochs of skorch's loop on the current (possibly masked) module."""
        if epochs <= 0:
            return
        self._check_trainable("train")
        self.phase_ = phase
        self.notify("on_train_begin", X=data, y=y_index)
        try:
            self.fit_loop(data, y_index, epochs=epochs, _routing_method="partial_fit")
        except KeyboardInterrupt:
            pass
        self.notify("on_train_end", X=data, y=y_index)
        self.phase_ = "train"

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> Self:
        """Train ``max_epochs`` more epochs; a pruned net keeps its masks (zeros stay zero).

        On an unfitted net this is a dense ``fit`` without pruning. ``classes`` (all the labels,
        in any order) lets a first batch hold only some of them, as in sklearn's
        ``partial_fit``; once fitted, labels must be among ``classes_``. ``X`` and ``y`` are
        those of :meth:`fit` (a torch ``Dataset`` or ``DataLoader`` too, with ``y=None`` for
        the items' labels).
        """
        self._validate_own_params()
        if not self.initialized_:
            self._check_trainable("partial_fit", self.module)
            with self._transaction(in_place=self._trains_in_place()):
                X_arr, y_index, found = self._validate_training_data(
                    X, y, reset=True, classes=classes
                )
                weight = self._check_sample_weight(sample_weight, X_arr)
                self.classes_inferred_ = found
                self.input_shape_ = self._input_shape(X_arr)
                with self._seeded():
                    self.initialize()
                    self._train_epochs(
                        self._training_input(X_arr, sample_weight=weight),
                        y_index,
                        self.max_epochs,
                        phase="fine_tune" if self.dense_state_dict_ is not None else "train",
                    )
            return self
        self._check_trainable("partial_fit")
        return self._continue_training(
            X, y, self.max_epochs, classes=classes, sample_weight=sample_weight
        )

    def fine_tune(self, X: Any, y: Any, epochs: int, *, sample_weight: Any = None) -> Self:
        """Train a fitted net ``epochs`` more epochs with its masks held (zeros stay zero).

        ``partial_fit`` with an explicit number of epochs instead of ``max_epochs``; on an error
        the net is left as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W), or a torch \
                Dataset or DataLoader
            As for :meth:`fit`.
        y : array-like of shape (n_samples,) or None
            Labels among ``classes_``; None with a ``Dataset``: the items' labels.
        epochs : int >= 0
            0 changes nothing.
        sample_weight : array-like of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self.check_is_fitted()
        epochs = check_int(epochs, "epochs", 0)
        self._validate_own_params()
        if epochs:
            self._check_trainable("fine_tune")
        return self._continue_training(X, y, epochs, sample_weight=sample_weight)

    def _continue_training(
        self, X: Any, y: Any, epochs: int, *, classes: Any = None, sample_weight: Any = None
    ) -> Self:
        with self._transaction(in_place=True):
            X_arr, y_index, _ = self._validate_training_data(X, y, reset=False, classes=classes)
            weight = self._check_sample_weight(sample_weight, X_arr)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(
                    self._training_input(X_arr, sample_weight=weight),
                    y_index,
                    epochs,
                    phase="fine_tune" if self.dense_state_dict_ is not None else "train",
                )
                pruning.detach_pruned_weights(self.module_)
        return self

    # ------------------------------------------------------------------------------------------
    # pruning
    # ------------------------------------------------------------------------------------------
    def prune(
        self,
        rate: float,
        method: str | None = None,
        *,
        X: Any = None,
        y: Any = None,
        sensitive_features: Any = None,
    ) -> Self:
        """Prune the fitted net in place to a total sparsity ``rate``; keep θ* for the audit.

        The optimizer is re-initialised. Calling ``prune`` again prunes further (rates are
        cumulative targets); the dense reference stays the one from before the first pruning
        (for a module given with torch prune masks, its ``weight_orig``; with
        ``reference_module``, that module). On any error the net is left exactly as it was.

        Parameters
        ----------
        rate : float in [0, 1)
            Target fraction of prunable weights set to zero (checked by
            :func:`fairprune_sk.pruning.prune_module`).
        method : str, optional
            One of :data:`fairprune_sk.pruning.PRUNING_METHODS`; ``pruning_method`` if None.
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W), optional
            Rows of a data-driven method (:data:`~fairprune_sk.pruning.DATA_DRIVEN_METHODS`),
            which ranks the weights by what removing them costs each group; validated as in
            :meth:`fit` (arrays, not a torch ``Dataset``). The other methods rank the weights
            alone and take no data.
        y : array-like of shape (n_samples,), optional
            Labels of the rows, among ``classes_``; required with ``X``.
        sensitive_features : array-like, Series or DataFrame, optional
            Groups of the rows (several columns: intersectional groups); None: one group.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For an unknown ``method``; for a data-driven method without ``X`` or ``y`` (the
            message names what is missing), or data given to a method that takes none; for a
            module without float weights (a quantized one).
        """
        self.check_is_fitted()
        self._validate_own_params()
        method = self.pruning_method if method is None else method
        pruning.validate_method(method, caller_name=f"{type(self).__name__}.prune")
        self._check_trainable("prune")
        data = self._pruning_data(method, X, y, sensitive_features)
        with self._seeded(offset=len(self.history)):
            self._prune_in_place(rate, method, data)
        pruning.detach_pruned_weights(self.module_)
        return self

    def _pruning_data(self, method: str, X: Any, y: Any, sensitive_features: Any) -> dict:
        """The data keywords of ``prune_module`` for ``method``: none for a method that ranks
        the weights alone; validated rows, label indices and group codes for a data-driven
        one."""
        given = [name for name, value in (("X", X), ("y", y),
                                          ("sensitive_features", sensitive_features))
                 if value is not None]
        if method not in pruning.DATA_DRIVEN_METHODS:
            if given:
                raise ValueError(
                    f"method={method!r} ranks the weights alone and takes no data: leave out "
                    f"{', '.join(given)}"
                )
            return {}
        missing = [name for name, value in (("X", X), ("y", y)) if value is None]
        if missing:
            raise ValueError(
                f"method={method!r} ranks the weights with data: pass "
                f"{' and '.join(f'{name}=' for name in missing)} (the rows and their labels; "
                "sensitive_features= for their groups, one group without it)"
            )
        if is_stream(X):
            raise ValueError(
                f"method={method!r} ranks the weights on in-memory rows: pass X as an array "
                "(a sample of a torch Dataset's rows, say), not a Dataset or DataLoader"
            )
        X_arr, y_index, _ = self._validate_training_data(X, y, reset=False)
        groups = None
        if sensitive_features is not None:
            groups = group_codes(sensitive_features, len(y_index)).codes
        return self._data_for_pruning(X_arr, y_index, groups)

    def _data_for_pruning(self, X: np.ndarray, y_index: np.ndarray,
                          groups: np.ndarray | None) -> dict[str, Any]:
        """``prune_module``'s ``X``, ``y``, ``groups`` (one group when None), ``batch_size``."""
        if groups is None:
            groups = np.zeros(len(y_index), dtype=np.int64)
        batch_size = self.batch_size if self.batch_size > 0 else len(y_index)
        return {"X": X, "y": y_index, "groups": np.asarray(groups), "batch_size": batch_size}

    def _prune_in_place(self, rate: float, method: str, data: dict | None = None) -> None:
        """Prune a copy of ``module_`` and swap it in only once pruning succeeded; θ* is the
        module's weights before its first pruning (its ``weight_orig`` where torch prune
        reparametrised it). ``data``: the data keywords of a data-driven method."""
        module = pruning.copy_module(self.module_)
        pruning.prune_module(
            module,
            rate,
            method,
            keep_dense=tuple(self.keep_dense),
            min_layer_density=self.min_layer_density,
            random_state=torch_seed(self.random_state, len(self.history)),
            **(data or {}),
        )
        if getattr(self, "dense_state_dict_", None) is None:
            self.dense_state_dict_ = original_state_dict(self.module_)
        self.module_ = module
        self.sparsity_ = float(pruning.sparsity(module))
        self.initialize_optimizer()

    def pruned_copy(
        self,
        rate: float,
        method: str | None = None,
        *,
        X: Any = None,
        y: Any = None,
        fine_tune_epochs: int = 0,
        sample_weight: Any = None,
        sensitive_features: Any = None,
    ) -> Self:
        """A pruned (and optionally fine-tuned) copy of this fitted net; this net is untouched.

        The copy shares no mutable state with this net: its module, optimizer, history,
        callbacks and dual state (for :class:`~fairprune_sk.FairConstrainedNet`) are its own,
        so fine-tuning it leaves this net as it was (see :meth:`prune` and :meth:`fine_tune`).

        Parameters
        ----------
        rate : float in [0, 1)
            Target total sparsity (cumulative, as in :meth:`prune`).
        method : str, optional
            ``pruning_method`` if None.
        X, y : array-like, optional
            Training data of the fine-tuning; required when ``fine_tune_epochs > 0`` (``X`` may
            be a torch ``Dataset`` or ``DataLoader``, with ``y=None`` for the items' labels).
            A data-driven ``method`` ranks the weights on them too (see :meth:`prune`).
        fine_tune_epochs : int >= 0, default=0
            Epochs of :meth:`fine_tune` after pruning.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the fine-tuning loss.
        sensitive_features : array-like, Series or DataFrame, optional
            Groups of the rows ``X``, for a data-driven ``method`` only (see :meth:`prune`;
            None: one group).

        Returns
        -------
        PrunableNetClassifier
        """
        return self._pruned_copy(
            rate, method, X, y, fine_tune_epochs, {"sample_weight": sample_weight},
            groups=sensitive_features,
        )

    def _pruned_copy(
        self, rate: float, method: str | None, X: Any, y: Any, epochs: Any, fit_params: dict,
        groups: Any = None,
    ) -> Self:
        """:meth:`pruned_copy`; ``fit_params`` are the keywords of this class's ``fine_tune``,
        ``groups`` the rows' groups of a data-driven method."""
        self.check_is_fitted()
        epochs = check_int(epochs, "fine_tune_epochs", 0)
        if epochs and (X is None or (y is None and not is_stream(X))):
            raise ValueError(
                f"fine_tune_epochs={epochs} needs the training data: pass X= and y="
            )
        data = {}
        if (self.pruning_method if method is None else method) in pruning.DATA_DRIVEN_METHODS:
            data = {"X": X, "y": y, "sensitive_features": groups}
        copy = self._sibling(pruning.copy_module(self.module_)).prune(rate, method, **data)
        if epochs:
            copy.fine_tune(X, y, epochs, **fit_params)
        return copy

    # ------------------------------------------------------------------------------------------
    # quantization
    # ------------------------------------------------------------------------------------------
    def quantize(
        self, bits: int, *, activations: bool | int = False, keep_float: tuple[str, ...] = ()
    ) -> Self:
        """Put the fitted net's weights on a ``bits``-bit grid in place; keep θ* for the audit.

        Simulated symmetric quantization per output channel
        (:func:`fairprune_sk.quantization.quantize_module`): the net predicts with grid values,
        and :meth:`fine_tune` (and :class:`~fairprune_sk.FairConstrainedNet`'s constrained
        fine-tuning) is quantization-aware, its straight-through estimator updating the float
        weights while the weights the net uses stay on the grid. θ* (``dense_state_dict_``) is
        the dense float net: the weights before the first pruning for a pruned net (prune,
        then quantize), else the weights at this call. Quantizing again replaces the grid
        (from the float weights, not the rounded ones). The optimizer is re-initialised; on
        any error the net is left as it was. Prune and compact before quantizing:
        :meth:`prune` and :meth:`compact` refuse a quantized net.

        Parameters
        ----------
        bits : int in [2, 8]
            Width of the weight grid, recorded as ``quantized_bits_``.
        activations : bool or int in [2, 8], default=False
            Also quantize each quantized layer's input (True: with ``bits`` bits; an int:
            with that many), one scale per sample; recorded as ``activation_bits_``.
        keep_float : tuple of str, default=()
            Layers left in float: qualified module names, or ``"first"`` / ``"last"``.

        Returns
        -------
        self

        Examples
        --------
        >>> from sklearn.datasets import make_classification
        >>> from fairprune_sk import PrunableNetClassifier
        >>> from fairprune_sk.models import MLP
        >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
        >>> net = PrunableNetClassifier(MLP, max_epochs=2, lr=0.05, random_state=0).fit(X, y)
        >>> net.prune(0.5).quantize(4).quantized_bits_, round(net.sparsity_, 1) >= 0.5
        (4, True)
        >>> net.dense_reference().quantized_bits_ is None
        True
        """
        self.check_is_fitted()
        self._validate_own_params()
        name = f"{type(self).__name__}.quantize"
        check_args(
            {"bits": BITS, "activations": ACTIVATIONS, "keep_float": [tuple, list]},
            {"bits": bits, "activations": activations, "keep_float": keep_float},
            name,
        )
        self._check_trainable("quantize")
        self._quantize_in_place(bits, activations=activations, keep_float=tuple(keep_float))
        pruning.detach_pruned_weights(self.module_)
        return self

    def _quantize_in_place(self, bits: int, *, activations: bool | int = False,
                           keep_float: tuple[str, ...] = ()) -> None:
        """Quantize a copy of ``module_`` and swap it in only once that succeeded; θ* is the
        module's weights before its first pruning or quantization."""
        module = pruning.copy_module(self.module_)
        quantization.quantize_module(module, bits, activations=activations,
                                     keep_float=keep_float)
        if getattr(self, "dense_state_dict_", None) is None:
            self.dense_state_dict_ = original_state_dict(self.module_)
        self.module_ = module
        self.sparsity_ = float(pruning.sparsity(module))
        self._record_quantization()
        self.initialize_optimizer()

    def quantized_copy(
        self, bits: int, *, activations: bool | int = False, keep_float: tuple[str, ...] = ()
    ) -> Self:
        """A quantized copy of this fitted net (:meth:`quantize`); this net is untouched.

        The copy shares no mutable state with this net (as :meth:`pruned_copy`'s); fine-tune
        it with its own :meth:`fine_tune` (quantization-aware).

        Parameters
        ----------
        bits : int in [2, 8]
        activations : bool or int in [2, 8], default=False
        keep_float : tuple of str, default=()
            As for :meth:`quantize`.

        Returns
        -------
        PrunableNetClassifier
        """
        self.check_is_fitted()
        return self._sibling(pruning.copy_module(self.module_)).quantize(
            bits, activations=activations, keep_float=keep_float
        )

    def _record_quantization(self) -> None:
        """Set ``quantized_bits_`` and ``activation_bits_`` from the module's grids."""
        module = self.module_
        weights = quantization.quantized_bits(module) if isinstance(module, nn.Module) else {}
        inputs = [bits for bits in quantization.quantized_bits(module, inputs=True).values()
                  if bits] if weights else []
        self.quantized_bits_ = max(weights.values()) if weights else None
        self.activation_bits_ = max(inputs) if inputs else None

    def _dense_module(self) -> nn.Module:
        """θ* as a plain module (no pruning hooks) on the net's device, built from
        ``dense_state_dict_`` in the structure of ``reference_module`` or else ``module_``."""
        structure = self.module_ if self.reference_module is None else self.reference_module
        return pruning.unpruned_copy(structure, self.dense_state_dict_).to(self.device)

    def dense_reference(self) -> PrunableNetClassifier:
        """A fitted net with the dense weights θ* and no masks (for the audit).

        A plain module holding θ* is built; like :meth:`pruned_copy`, the reference shares no
        mutable state with this net.

        Raises
        ------
        ValueError
            If the net was never pruned or quantized (it is its own dense reference then).
        """
        self.check_is_fitted()
        if getattr(self, "dense_state_dict_", None) is None:
            raise ValueError(
                f"this {type(self).__name__} was never pruned or quantized (or was loaded "
                "without f_dense_state_dict), so it keeps no dense reference; call prune(rate) "
                "or quantize(bits) first, or pass reference= to ExcessRiskFrame"
            )
        reference = self._sibling(self._dense_module())
        reference.dense_state_dict_ = None
        reference.sparsity_ = float(pruning.sparsity(reference.module_))
        reference._record_quantization()
        return reference

    def compact(self) -> PrunableNetClassifier:
        """A fitted copy whose module is physically smaller (structured pruning only).

        Units / filters removed by ``structured_l1`` / ``structured_l2`` are cut out of the layers
        (:func:`fairprune_sk.pruning.compact`), so inference is faster; predictions are the same.
        The copy keeps no dense reference (its shapes differ from θ*'s), unless θ* is
        ``reference_module``; it reports the sparsity of its compacted module, and shares no
        mutable state with this net.

        Raises
        ------
        NotImplementedError
            If the architecture cannot be compacted (e.g. residual connections).
        ValueError
            If the net is quantized: compact, then quantize the compact copy.
        """
        self.check_is_fitted()
        check_not_quantized(self.module_, f"{type(self).__name__}.compact", "compact")
        pruning.detach_pruned_weights(self.module_)
        compacted = self._sibling(pruning.compact(self.module_))
        if self.reference_module is None:
            compacted.dense_state_dict_ = None
        compacted.sparsity_ = float(pruning.sparsity(compacted.module_))
        return compacted

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float64 as sklearn's classifiers return, columns in ``classes_``.

        The module computes in its own dtype (float32 by default); the probabilities are cast to
        float64 and renormalised so every row sums to 1 in float64. ``X`` may be a torch
        ``Dataset`` (items ``(x, y)``, ``x`` alone or dicts; labels are ignored), streamed in
        batches of ``batch_size``, or a ``DataLoader`` that does not shuffle; the rows follow
        its order.
        """
        self.check_is_fitted()
        proba = np.asarray(super().predict_proba(self._validate_X(X, reset=False)), np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (of the same type as the ``y`` seen in fit)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_)[proba.argmax(axis=1)]

    # ------------------------------------------------------------------------------------------
    # persistence
    # ------------------------------------------------------------------------------------------
    def save_params(
        self,
        f_params: Any = None,
        f_optimizer: Any = None,
        f_criterion: Any = None,
        f_history: Any = None,
        use_safetensors: bool = False,
        *,
        f_dense_state_dict: Any = None,
        **kwargs: Any,
    ) -> None:
        """skorch's ``save_params``, plus θ*; a pruned module is saved with its masks.

        ``f_params`` holds the module's ``state_dict`` as it is: a pruned tensor is saved as
        ``<name>_orig`` and ``<name>_mask`` (torch's reparametrisation), so the masks travel
        with the weights. ``f_dense_state_dict`` saves the dense weights θ*
        (``dense_state_dict_``), which the audit (:meth:`dense_reference`) needs. Fitted
        attributes (``classes_``, ``n_features_in_``, ...) are not saved: load into a net
        built with the same ``module__*`` parameters (``n_features``, ``n_classes``) and
        ``classes``, or pickle the whole net.

        Examples
        --------
        >>> import tempfile
        >>> from pathlib import Path
        >>> import numpy as np
        >>> from sklearn.datasets import make_classification
        >>> from fairprune_sk import PrunableNetClassifier
        >>> from fairprune_sk.models import MLP
        >>> X, y = make_classification(n_samples=200, n_features=8, random_state=0)
        >>> net = PrunableNetClassifier(MLP, max_epochs=2, random_state=0).fit(X, y).prune(0.7)
        >>> folder = Path(tempfile.mkdtemp())
        >>> files = dict(f_params=folder / "w.pt", f_optimizer=folder / "opt.pt",
        ...              f_history=folder / "h.json", f_dense_state_dict=folder / "dense.pt")
        >>> net.save_params(**files)
        >>> new = PrunableNetClassifier(MLP, module__n_features=8, module__n_classes=2,
        ...                             classes=[0, 1]).initialize()
        >>> new.load_params(**files)
        >>> round(new.sparsity_, 2), bool(np.allclose(new.predict_proba(X), net.predict_proba(X)))
        (0.7, True)
        >>> import shutil; shutil.rmtree(folder)
        """
        super().save_params(
            f_params=f_params,
            f_optimizer=f_optimizer,
            f_criterion=f_criterion,
            f_history=f_history,
            use_safetensors=use_safetensors,
            **kwargs,
        )
        if f_dense_state_dict is None:
            return
        state = getattr(self, "dense_state_dict_", None)
        if state is None:
            raise ValueError(
                f"this {type(self).__name__} was never pruned or quantized: it has no "
                "dense_state_dict_ to save (leave f_dense_state_dict out)"
            )
        if use_safetensors:
            from safetensors.torch import save, save_file

            if isinstance(f_dense_state_dict, str | os.PathLike):
                save_file(dict(state), f_dense_state_dict)
            else:
                f_dense_state_dict.write(save(dict(state)))
        else:
            torch.save(dict(state), f_dense_state_dict)

    def load_params(
        self,
        f_params: Any = None,
        f_optimizer: Any = None,
        f_criterion: Any = None,
        f_history: Any = None,
        checkpoint: Any = None,
        use_safetensors: bool = False,
        *,
        f_dense_state_dict: Any = None,
        **kwargs: Any,
    ) -> None:
        """skorch's ``load_params``; the module takes the pruning of the state it loads.

        A state saved from a pruned net (``<name>_orig`` / ``<name>_mask``) installs the same
        masks on an unpruned module before loading (and a dense state removes them), then
        re-initialises the optimizer so that a saved optimizer state (``f_optimizer``) matches
        the parameters; ``sparsity_`` is recomputed. ``f_dense_state_dict`` loads θ*
        (see :meth:`save_params`).
        """
        handles = [
            module.register_load_state_dict_pre_hook(self._match_pruning_hook)
            for module in self._torch_state_objects()
            if isinstance(module, nn.Module)
        ]
        try:
            super().load_params(
                f_params=f_params,
                f_optimizer=f_optimizer,
                f_criterion=f_criterion,
                f_history=f_history,
                checkpoint=checkpoint,
                use_safetensors=use_safetensors,
                **kwargs,
            )
        finally:
            for handle in handles:
                handle.remove()
        if f_dense_state_dict is not None:
            if use_safetensors:
                from safetensors.torch import load, load_file

                if isinstance(f_dense_state_dict, str | os.PathLike):
                    state = load_file(f_dense_state_dict)
                else:
                    state = load(f_dense_state_dict.read())
            else:
                state = torch.load(f_dense_state_dict, map_location="cpu", weights_only=True)
            self.dense_state_dict_ = {key: value.cpu() for key, value in state.items()}
        if self.initialized_ and hasattr(self, "module_"):
            pruning.detach_pruned_weights(self.module_)
            self.sparsity_ = float(pruning.sparsity(self.module_))
            self._record_quantization()

    def _match_pruning_hook(self, module: nn.Module, state_dict: Mapping, prefix: str,
                            *args: Any) -> None:
        """Before a module loads ``state_dict``: give it the pruning reparametrisation the state
        has (masks on, or off), and rebuild the optimizer if that changed the parameters."""
        if match_pruning(module, state_dict, prefix) and module is getattr(self, "module_", None):
            self.initialize_optimizer()

    def __getstate__(self) -> dict:
        if getattr(self, "initialized_", False) and hasattr(self, "module_"):
            pruning.detach_pruned_weights(self.module_)
        return super().__getstate__()
