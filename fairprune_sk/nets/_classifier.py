"""PrunableNetClassifier: a skorch ``NeuralNetClassifier`` with a pruning lifecycle.

``fit`` trains the dense net θ*; when ``pruning_rate > 0`` it then prunes (one shot or in
``pruning_steps`` iterative steps) and fine-tunes with the masks held, so ``GridSearchCV`` can
search over ``pruning_rate``. ``prune`` prunes a fitted net in place and keeps the dense weights
θ* as a plain ``state_dict`` (``dense_state_dict_``), which is what the excess risk
``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (eq. 2) is measured against.
"""

from __future__ import annotations

import inspect
from numbers import Integral, Real
from typing import Any, Self

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions
from skorch import NeuralNetClassifier
from skorch.callbacks import EpochScoring
from torch import nn

from .. import pruning
from .._validation import check_int, check_params, torch_seed
from ._callbacks import PruningLog, TerminalPrintLog, index_accuracy
from ._data import INPUT_KEY, SAMPLE_WEIGHT_KEY, InMemoryBatches, NetDataMixin
from ._loop import LoopHooksMixin
from ._persistence import PersistenceMixin
from ._state import NetStateMixin

__all__ = [
    "INPUT_KEY",
    "PRUNING_SCHEDULES",
    "SAMPLE_WEIGHT_KEY",
    "InMemoryBatches",
    "PruningLog",
    "PrunableNetClassifier",
    "TerminalPrintLog",
]

PRUNING_SCHEDULES = ("one_shot", "iterative")



class PrunableNetClassifier(
    LoopHooksMixin, NetDataMixin, NetStateMixin, PersistenceMixin, NeuralNetClassifier
):
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
    phase_ : {"train", "fine_tune"}
        What the epochs being run are: dense training, or fine-tuning with the masks held
        (recorded as ``phase`` in ``history``; "train" between runs).
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features seen in ``fit``.

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

    def _inferred_module_kwargs(self) -> dict[str, Any]:
        inferred = {}
        if hasattr(self, "n_features_in_"):
            inferred["n_features"] = self.n_features_in_
            inferred["input_shape"] = self.input_shape_
        if hasattr(self, "classes_inferred_") or self.classes is not None:
            inferred["n_classes"] = len(self.classes_)
        return inferred

    # ------------------------------------------------------------------------------------------
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
        with self._transaction(in_place=self._trains_in_place()):
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
            self.phase_ = "train"
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
        ``partial_fit``; once fitted, labels must be among ``classes_``.
        """
        self._validate_own_params()
        if not self.initialized_:
            with self._transaction(in_place=self._trains_in_place()):
                X_arr, y_index, found = self._validate_training_data(
                    X, y, reset=True, classes=classes
                )
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
        return self._continue_training(
            X, y, self.max_epochs, classes=classes, sample_weight=sample_weight
        )

    def fine_tune(self, X: Any, y: Any, epochs: int, *, sample_weight: Any = None) -> Self:
        """Train a fitted net ``epochs`` more epochs with its masks held (zeros stay zero).

        ``partial_fit`` with an explicit number of epochs instead of ``max_epochs``; on an error
        the net is left as it was.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, H, W)
        y : array-like of shape (n_samples,)
            Labels among ``classes_``.
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
    def prune(self, rate: float, method: str | None = None) -> Self:
        """Prune the fitted net in place to a total sparsity ``rate``; keep θ* for the audit.

        The optimizer is re-initialised. Calling ``prune`` again prunes further (rates are
        cumulative targets); the dense reference stays the one from before the first pruning.
        On any error the net is left exactly as it was.

        Parameters
        ----------
        rate : float in [0, 1)
            Target fraction of prunable weights set to zero (checked by
            :func:`fairprune_sk.pruning.prune_module`).
        method : str, optional
            One of :data:`fairprune_sk.pruning.PRUNING_METHODS`; ``pruning_method`` if None.

        Returns
        -------
        self
        """
        self.check_is_fitted()
        self._validate_own_params()
        method = self.pruning_method if method is None else method
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
            random_state=torch_seed(self.random_state, len(self.history)),
        )
        if getattr(self, "dense_state_dict_", None) is None:
            self.dense_state_dict_ = pruning.effective_state_dict(self.module_)
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
    ) -> Self:
        """A pruned (and optionally fine-tuned) copy of this fitted net; this net is untouched.

        Only the module is copied: parameters, fitted attributes and callback objects are
        shared, the history rows copied (see :meth:`prune` and :meth:`fine_tune`).

        Parameters
        ----------
        rate : float in [0, 1)
            Target total sparsity (cumulative, as in :meth:`prune`).
        method : str, optional
            ``pruning_method`` if None.
        X, y : array-like, optional
            Training data of the fine-tuning; required when ``fine_tune_epochs > 0``.
        fine_tune_epochs : int >= 0, default=0
            Epochs of :meth:`fine_tune` after pruning.
        sample_weight : array-like of shape (n_samples,), optional
            Weights of the fine-tuning loss.

        Returns
        -------
        PrunableNetClassifier
        """
        return self._pruned_copy(
            rate, method, X, y, fine_tune_epochs, {"sample_weight": sample_weight}
        )

    def _pruned_copy(
        self, rate: float, method: str | None, X: Any, y: Any, epochs: Any, fit_params: dict
    ) -> Self:
        """:meth:`pruned_copy`; ``fit_params`` are the keywords of this class's ``fine_tune``."""
        self.check_is_fitted()
        epochs = check_int(epochs, "fine_tune_epochs", 0)
        if epochs and (X is None or y is None):
            raise ValueError(
                f"fine_tune_epochs={epochs} needs the training data: pass X= and y="
            )
        copy = self._sibling(pruning.copy_module(self.module_)).prune(rate, method)
        if epochs:
            copy.fine_tune(X, y, epochs, **fit_params)
        return copy

    def _dense_module(self) -> nn.Module:
        """θ* as a plain module (no pruning hooks), built from ``dense_state_dict_``."""
        return pruning.unpruned_copy(self.module_, self.dense_state_dict_)

    def dense_reference(self) -> PrunableNetClassifier:
        """A fitted net with the dense weights θ* and no masks (for the audit).

        Only a plain module holding θ* is built; parameters, fitted attributes and callback
        objects are shared with this net (nothing is deep-copied).

        Raises
        ------
        ValueError
            If the net was never pruned (it is its own dense reference then).
        """
        self.check_is_fitted()
        if getattr(self, "dense_state_dict_", None) is None:
            raise ValueError(
                f"this {type(self).__name__} was never pruned (or was loaded without "
                "f_dense_state_dict), so it keeps no dense reference; call prune(rate) first, "
                "or pass reference= to ExcessRiskFrame"
            )
        reference = self._sibling(self._dense_module())
        reference.dense_state_dict_ = None
        reference.sparsity_ = float(pruning.sparsity(reference.module_))
        return reference

    def compact(self) -> PrunableNetClassifier:
        """A fitted copy whose module is physically smaller (structured pruning only).

        Units / filters removed by ``structured_l1`` / ``structured_l2`` are cut out of the layers
        (:func:`fairprune_sk.pruning.compact`), so inference is faster; predictions are the same.
        The copy keeps no dense reference (its shapes differ from θ*'s). Only the module is
        rebuilt; parameters and callback objects are shared with this net.

        Raises
        ------
        NotImplementedError
            If the architecture cannot be compacted (e.g. residual connections).
        """
        self.check_is_fitted()
        pruning.detach_pruned_weights(self.module_)
        compacted = self._sibling(pruning.compact(self.module_))
        compacted.dense_state_dict_ = None
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
