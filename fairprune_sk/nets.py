"""PrunableNetClassifier: a skorch ``NeuralNetClassifier`` with a pruning lifecycle.

``fit`` trains the dense net θ*; when ``pruning_rate > 0`` it then prunes (one shot or in
``pruning_steps`` iterative steps) and fine-tunes with the masks held, so ``GridSearchCV`` can
search over ``pruning_rate``. ``prune`` prunes a fitted net in place and keeps the dense weights
θ* as a plain ``state_dict`` (``dense_state_dict_``), which is what the excess risk
``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2) is measured against.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_parameter_constraints
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, validate_data
from skorch import NeuralNetClassifier
from skorch.callbacks import Callback, EpochScoring, PrintLog
from skorch.dataset import Dataset
from skorch.utils import to_tensor
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, Subset

from . import pruning

#: Key of the input array when a net's training data travels as a dict with per-sample metadata.
INPUT_KEY = "X"
SAMPLE_WEIGHT_KEY = "sample_weight"

PRUNING_SCHEDULES = ("one_shot", "iterative")


def _seed_from(random_state: Any, offset: int = 0) -> int | None:
    """An int seed for torch from sklearn's ``random_state`` convention (None: no seeding)."""
    if random_state is None:
        return None
    if isinstance(random_state, Integral):
        return (int(random_state) + offset) % (2**63 - 1)
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def _index_accuracy(net: NeuralNetClassifier, X: Any, y: Any) -> float:
    """Validation accuracy on the internal (label-encoded) data, for skorch's ``valid_acc``."""
    proba = NeuralNetClassifier.predict_proba(net, X)
    return float(np.mean(proba.argmax(axis=1) == np.asarray(y)))


class PruningLog(Callback):
    """Records each epoch's phase (``train`` / ``fine_tune``) and sparsity in ``history``."""

    def on_epoch_end(self, net: Any, **kwargs: Any) -> None:
        net.history.record("phase", getattr(net, "_phase", "train"))
        net.history.record("sparsity", float(pruning.sparsity(net.module_)))


class TerminalPrintLog(PrintLog):
    """skorch's ``PrintLog`` that colours the best values only when they go to a terminal.

    skorch marks each epoch's best scores with ANSI colour codes; in a log file (stdout not a
    terminal, or a ``sink`` other than ``print``) they are noise, so the values are printed plain.
    ``NO_COLOR`` in the environment (no-color.org) turns colours off on a terminal too.
    """

    def format_row(self, row: Any, key: str, color: str) -> Any:
        stream = sys.stdout
        colours = (self.sink is print and not os.environ.get("NO_COLOR")
                   and hasattr(stream, "isatty") and stream.isatty())
        if not colours and row.get(f"{key}_best"):
            row = {**row, f"{key}_best": False}  # the same number, without the colour codes
        return super().format_row(row, key, color)


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
        Epochs of training with the masks held after each pruning step in ``fit``.
    keep_dense : tuple of str, default=()
        Layers never pruned: qualified module names, or ``"first"`` / ``"last"``.
    min_layer_density : float in [0, 1], default=0.0
        Global magnitude pruning keeps at least this fraction of every layer.
    random_state : int, RandomState or None, default=None
        Seeds weight initialisation, batch shuffling and random pruning; the global torch RNG
        state is restored afterwards. A ``train_split`` such as ``ValidSplit(0.2)`` has its own
        ``random_state``: set it too for a reproducible validation split.
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
        The dense weights θ* kept by the first pruning (plain tensors on CPU); None if never pruned.
    sparsity_ : float
        Achieved fraction of prunable weights that are zero.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> from fairprune_sk import PrunableNetClassifier
    >>> from fairprune_sk.models import MLP
    >>> net = PrunableNetClassifier(MLP, max_epochs=5, lr=0.05, random_state=0, verbose=0)
    >>> net.fit(X, y).prune(0.8).sparsity_                      # doctest: +SKIP
    0.8
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

    # ------------------------------------------------------------------------------------------
    # sklearn / skorch plumbing
    # ------------------------------------------------------------------------------------------
    @property
    def _default_callbacks(self) -> list:
        callbacks = dict(super()._default_callbacks)
        # valid_acc on the label-encoded internal data; the phase/sparsity log before printing
        callbacks["valid_acc"] = EpochScoring(
            _index_accuracy, name="valid_acc", lower_is_better=False
        )
        callbacks.pop("print_log")  # ours: ANSI colours only on a terminal
        return [*callbacks.items(), ("pruning_log", PruningLog()),
                ("print_log", TerminalPrintLog())]

    def _get_param_names(self) -> list[str]:
        """Parameters are the public attributes; skorch's private bookkeeping is not one."""
        return [name for name in super()._get_param_names() if not name.startswith("_")]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.non_deterministic = self.random_state is None
        return tags

    def _validate_own_params(self) -> None:
        """Check the parameters this class adds (skorch validates only its own)."""
        validate_parameter_constraints(
            self._parameter_constraints,
            {name: getattr(self, name) for name in self._parameter_constraints},
            caller_name=type(self).__name__,
        )

    def get_iterator(self, dataset: Any, training: bool = False) -> Any:
        """Batches by slicing the in-memory arrays once per batch, not once per sample.

        skorch's default ``DataLoader`` indexes and collates sample by sample, which dominates
        an epoch of a small tabular net. For skorch's own in-memory ``Dataset`` (or a ``Subset``
        of it) and the default ``DataLoader``, a ``BatchSampler`` hands whole index lists to the
        dataset instead; shuffling, batch size and the other loader options are unchanged.
        Custom datasets, iterators, samplers or collate functions take skorch's path.
        """
        iterator = self.iterator_train if training else self.iterator_valid
        kwargs = self.get_params_for("iterator_train" if training else "iterator_valid")
        base = dataset.dataset if isinstance(dataset, Subset) else dataset
        custom = {"sampler", "batch_sampler", "collate_fn"} & set(kwargs)
        if iterator is not DataLoader or type(base) is not Dataset or custom:
            return super().get_iterator(dataset, training=training)
        batch_size = kwargs.pop("batch_size", self.batch_size)
        batch_size = len(dataset) if batch_size == -1 else batch_size
        order = (
            RandomSampler(dataset) if kwargs.pop("shuffle", False) else SequentialSampler(dataset)
        )
        batches = BatchSampler(order, batch_size, drop_last=kwargs.pop("drop_last", False))
        return DataLoader(dataset, batch_size=None, sampler=batches, **kwargs)

    def check_data(self, X: Any, y: Any) -> None:
        """Data are validated by ``fit`` / ``partial_fit`` before they reach skorch."""

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

    def _inferred_module_kwargs(self) -> dict[str, Any]:
        inferred = {}
        if hasattr(self, "n_features_in_"):
            inferred["n_features"] = self.n_features_in_
            inferred["input_shape"] = self.input_shape_
        if hasattr(self, "classes_inferred_") or self.classes is not None:
            inferred["n_classes"] = len(self.classes_)
        return inferred

    @contextmanager
    def _seeded(self, offset: int = 0) -> Iterator[None]:
        """Seed torch from ``random_state`` and restore the caller's RNG state afterwards."""
        seed = _seed_from(self.random_state, offset)
        if seed is None:
            yield
            return
        devices = [] if str(self.device).startswith("cpu") else None
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    # ------------------------------------------------------------------------------------------
    # data
    # ------------------------------------------------------------------------------------------
    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        return validate_data(self, X, reset=reset, dtype=np.float32, allow_nd=True)

    def _validate_training_data(
        self, X: Any, y: Any, *, reset: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate X and y; return float32 X, encoded y and the classes (nothing is stored)."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X, y = validate_data(self, X, y, reset=reset, dtype=np.float32, allow_nd=True)
        check_classification_targets(y)
        if reset:
            if self.classes is not None:
                classes = np.asarray(self.classes)
            else:
                classes = np.unique(y)
        else:
            classes = self.classes_
        from .metrics import encode_labels

        y_index = encode_labels(y, classes)
        if len(classes) < 2:
            raise ValueError(
                "Classifier can't train when only one class is present; "
                f"y has the single class {classes.tolist()}"
            )
        return X, y_index, classes

    def _check_sample_weight(self, sample_weight: Any, X: np.ndarray) -> np.ndarray | None:
        """Normalise weights to mean 1 so the loss scale (and lr) does not depend on them."""
        if sample_weight is None:
            return None
        weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        total = weight.sum()
        if total <= 0:
            raise ValueError(
                "sample_weight sums to zero; at least one sample needs a positive weight"
            )
        if np.all(weight == weight[0]):
            return None  # uniform weights: exactly the unweighted loss
        return (weight * (len(weight) / total)).astype(np.float32)

    def _training_input(self, X: np.ndarray, **per_sample: np.ndarray | None) -> Any:
        """X as skorch will batch it: a dict when per-sample metadata must travel with it."""
        extras = {key: value for key, value in per_sample.items() if value is not None}
        if not extras:
            return X
        return {INPUT_KEY: X, **extras}

    # ------------------------------------------------------------------------------------------
    # forward and loss
    # ------------------------------------------------------------------------------------------
    def infer(self, x: Any, **fit_params: Any) -> torch.Tensor:
        """Forward a batch; per-sample metadata riding along in a dict batch is left out."""
        if isinstance(x, Mapping) and INPUT_KEY in x:
            x = x[INPUT_KEY]
        return super().infer(x, **fit_params)

    def per_sample_loss(self, y_pred: torch.Tensor, y_true: Any) -> torch.Tensor:
        """The criterion with ``reduction="none"``: one loss per sample of the batch."""
        reduction = self.criterion_.reduction
        self.criterion_.reduction = "none"
        try:
            return super().get_loss(y_pred, y_true)
        finally:
            self.criterion_.reduction = reduction

    def get_loss(
        self, y_pred: torch.Tensor, y_true: Any, X: Any = None, training: bool = False
    ) -> torch.Tensor:
        """Mean loss, weighted by the batch's ``sample_weight`` when the data carry one."""
        weight = X.get(SAMPLE_WEIGHT_KEY) if isinstance(X, Mapping) else None
        if weight is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        losses = self.per_sample_loss(y_pred, y_true)
        return (losses * to_tensor(weight, device=losses.device)).mean()

    # ------------------------------------------------------------------------------------------
    # fit / partial_fit
    # ------------------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Self:
        """Train the dense net; if ``pruning_rate > 0``, prune and fine-tune it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
            Training data (numpy, pandas or anything ``check_array`` takes); cast to float32.
        y : array-like of shape (n_samples,)
            Class labels of any type.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative per-sample weights of the loss (normalised to mean 1; uniform weights
            give exactly the unweighted result). They travel inside the dataset, so batches and
            the validation split slice them with X.

        Returns
        -------
        self
        """
        self._validate_own_params()
        with self._transaction(deep=self._trains_in_place()):
            X_arr, y_index, classes = self._validate_training_data(X, y, reset=True)
            weight = self._check_sample_weight(sample_weight, X_arr)
            self._fit_validated(X_arr, y_index, classes, sample_weight=weight)
        return self

    def _fit_validated(
        self, X: np.ndarray, y_index: np.ndarray, classes: np.ndarray, **per_sample
    ) -> None:
        """Dense training, then the pruning schedule; inputs are already validated."""
        self.classes_inferred_ = classes
        self.input_shape_ = tuple(X.shape[1:])
        data = self._training_input(X, **per_sample)
        with self._seeded():
            if not (self.warm_start and self.initialized_):
                self.initialize()
                self.dense_state_dict_ = None
            pruning.prunable_tensors(self.module_, keep_dense=tuple(self.keep_dense))
            self.sparsity_ = float(pruning.sparsity(self.module_))
            self._phase = "train"
            super().partial_fit(data, y_index, _routing_method="fit")
            if self.pruning_rate > 0:
                data = self._fine_tuning_input(data, y_index)
                for rate in self._schedule_rates():
                    self._prune_in_place(rate, self.pruning_method)
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
        self._phase = phase
        self.notify("on_train_begin", X=data, y=y_index)
        try:
            self.fit_loop(data, y_index, epochs=epochs, _routing_method="partial_fit")
        except KeyboardInterrupt:
            pass
        self.notify("on_train_end", X=data, y=y_index)
        self._phase = "train"

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> Self:
        """Train ``max_epochs`` more epochs; a pruned net keeps its masks (zeros stay zero).

        On an unfitted net this is a dense ``fit`` without pruning. ``classes`` is accepted for
        sklearn compatibility; labels must be among ``classes_`` once fitted.
        """
        self._validate_own_params()
        if not self.initialized_:
            with self._transaction(deep=False):
                X_arr, y_index, found = self._validate_training_data(X, y, reset=True)
                if classes is not None and self.classes is None:
                    found = np.unique(np.asarray(classes))
                    y_index = self._encode(y, found)
                weight = self._check_sample_weight(sample_weight, X_arr)
                self.classes_inferred_ = found
                self.input_shape_ = tuple(X_arr.shape[1:])
                with self._seeded():
                    self.initialize()
                    self.dense_state_dict_ = None
                    self.sparsity_ = 0.0
                    self._train_epochs(
                        self._training_input(X_arr, sample_weight=weight),
                        y_index,
                        self.max_epochs,
                        phase="train",
                    )
            return self
        with self._transaction(deep=True):
            X_arr, y_index, _ = self._validate_training_data(X, y, reset=False)
            weight = self._check_sample_weight(sample_weight, X_arr)
            with self._seeded(offset=len(self.history)):
                self._train_epochs(
                    self._training_input(X_arr, sample_weight=weight),
                    y_index,
                    self.max_epochs,
                    phase="fine_tune" if self.dense_state_dict_ is not None else "train",
                )
                pruning.detach_pruned_weights(self.module_)
        return self

    @staticmethod
    def _encode(y: Any, classes: np.ndarray) -> np.ndarray:
        from .metrics import encode_labels

        return encode_labels(np.asarray(y), classes)

    def _trains_in_place(self) -> bool:
        """Whether ``fit`` will train the existing module object (warm start, module instance)."""
        return bool(self.warm_start) or isinstance(self.module, nn.Module)

    @contextmanager
    def _transaction(self, *, deep: bool) -> Iterator[None]:
        """Restore the estimator's state if the block raises (a failed fit changes nothing).

        ``deep`` copies the state (needed when the module is trained in place, as in warm starts);
        otherwise a shallow copy suffices because ``initialize`` builds new objects.
        """
        if self.initialized_ and deep:
            pruning.detach_pruned_weights(self.module_)
            saved = copy.deepcopy(self.__dict__)
        else:
            saved = dict(self.__dict__)
        try:
            yield
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    # ------------------------------------------------------------------------------------------
    # pruning
    # ------------------------------------------------------------------------------------------
    def prune(self, rate: float, method: str | None = None) -> Self:
        """Prune the fitted net in place to a total sparsity ``rate``; keep θ* for the audit.

        The optimizer is re-initialised. Calling ``prune`` again prunes further (rates are
        cumulative targets); the dense reference stays the one from before the first pruning.
        On any error the net is left exactly as it was.

        Parameters
        ----------
        rate : float in [0, 1)
            Target fraction of prunable weights set to zero.
        method : str, optional
            One of :data:`fairprune_sk.pruning.PRUNING_METHODS`; ``pruning_method`` if None.

        Returns
        -------
        self
        """
        self.check_is_fitted()
        rate = pruning.validate_rate(rate, "rate")
        method = pruning.validate_method(self.pruning_method if method is None else method)
        self._validate_own_params()
        with self._seeded(offset=len(self.history)):
            self._prune_in_place(rate, method)
        pruning.detach_pruned_weights(self.module_)
        return self

    def _prune_in_place(self, rate: float, method: str) -> None:
        """Prune a copy of ``module_`` and swap it in only once pruning succeeded."""
        module = pruning.copy_module(self.module_)
        pruning.prune_module(
            module,
            rate,
            method,
            keep_dense=tuple(self.keep_dense),
            min_layer_density=self.min_layer_density,
            random_state=_seed_from(self.random_state, len(self.history)),
        )
        if getattr(self, "dense_state_dict_", None) is None:
            self.dense_state_dict_ = pruning.effective_state_dict(self.module_)
        self.module_ = module
        self.sparsity_ = float(pruning.sparsity(module))
        self.initialize_optimizer()

    def dense_reference(self) -> PrunableNetClassifier:
        """A fitted copy of this net with the dense weights θ* and no masks.

        Raises
        ------
        ValueError
            If the net was never pruned (it is its own dense reference then).
        """
        self.check_is_fitted()
        if getattr(self, "dense_state_dict_", None) is None:
            raise ValueError(
                f"this {type(self).__name__} was never pruned, so it keeps no dense reference; "
                "call prune(rate) first, or pass reference= to ExcessRiskFrame"
            )
        pruning.detach_pruned_weights(self.module_)
        reference = copy.deepcopy(self)
        reference.module_ = pruning.unpruned_copy(self.module_, self.dense_state_dict_)
        reference.dense_state_dict_ = None
        reference.sparsity_ = float(pruning.sparsity(reference.module_))
        reference.initialize_optimizer()
        return reference

    def compact(self) -> PrunableNetClassifier:
        """A fitted copy whose module is physically smaller (structured pruning only).

        Units / filters removed by ``structured_l1`` / ``structured_l2`` are cut out of the layers
        (:func:`fairprune_sk.pruning.compact`), so inference is faster; predictions are the same.
        The copy keeps no dense reference (its shapes differ from θ*'s).

        Raises
        ------
        NotImplementedError
            If the architecture cannot be compacted (e.g. residual connections).
        """
        self.check_is_fitted()
        pruning.detach_pruned_weights(self.module_)
        compacted = copy.deepcopy(self)
        compacted.module_ = pruning.compact(self.module_)
        compacted.dense_state_dict_ = None
        compacted.initialize_optimizer()
        return compacted

    # ------------------------------------------------------------------------------------------
    # prediction
    # ------------------------------------------------------------------------------------------
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, float64 as sklearn's classifiers return, columns in ``classes_``.

        The module computes in its own dtype (float32 by default); the probabilities are cast to
        float64 and renormalised so every row sums to 1 in float64.
        """
        self.check_is_fitted()
        proba = np.asarray(super().predict_proba(self._validate_X(X, reset=False)), np.float64)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels (of the same type as the ``y`` seen in fit)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_)[proba.argmax(axis=1)]

    def __getstate__(self) -> dict:
        if getattr(self, "initialized_", False) and hasattr(self, "module_"):
            pruning.detach_pruned_weights(self.module_)
        return super().__getstate__()
