"""Plain torch modules used with the pruning estimators.

Every module returns **logits** of shape ``(n_samples, n_classes)``; train them with
``criterion=torch.nn.CrossEntropyLoss``.

The estimators inject the constructor arguments ``n_features`` (``X.shape[1]``),
``n_classes`` and ``input_shape`` (``X.shape[1:]``) when a module's constructor has a
parameter of that name and the user did not set it, so these modules can be passed as a
class (``PrunableNetClassifier(MLP, ...)``) without repeating the data's shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import torch
from torch import nn

from ._validation import Interval, InvalidParameterError, StrOptions, check_args

__all__ = ["MLP", "SmallCNN", "ResNet18", "BasicBlock"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}

# ----------------------------------------------------------------------------- validation
_POSITIVE = Interval(Integral, 1, None, closed="left")

#: sklearn constraints of the constructors' plain arguments (``hidden_units`` is one width in
#: SmallCNN; the sequences ``hidden_units`` of MLP and ``channels``, ``input_shape`` and
#: ``activation`` have their own checks below, in the same words).
_CONSTRAINTS: dict[str, list[Any]] = {
    "n_features": [_POSITIVE],
    "n_classes": [_POSITIVE],
    "hidden_units": [_POSITIVE],
    "width": [_POSITIVE],
    "dropout": [Interval(Real, 0.0, 1.0, closed="left")],
}


def _check(caller: str, **values: Any) -> None:
    check_args(_CONSTRAINTS, values, caller)


def _invalid(caller: str, name: str, expected: str, value: Any) -> InvalidParameterError:
    return InvalidParameterError(
        f"The {name!r} parameter of {caller} must be {expected}. Got {value!r} instead."
    )


def _int_sequence(value: Any, name: str, caller: str, *, allow_empty: bool) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ints >= 1) as a tuple of ints."""
    if isinstance(value, Integral):
        value = (value,)
    if (
        isinstance(value, str | bytes)
        or not isinstance(value, Sequence)
        or (not allow_empty and len(value) == 0)
        or not all(_POSITIVE.is_satisfied_by(v) for v in value)
    ):
        expected = "a sequence of ints >= 1" + ("" if allow_empty else " (at least one)")
        raise _invalid(caller, name, expected, value)
    return tuple(int(v) for v in value)


def _check_input_shape(value: Any, caller: str) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``(C, H, W)``, ``(H, W)`` or a flat square image ``(n,)``."""
    expected = "a tuple (C, H, W) of ints >= 1, (H, W) for one channel, or a flat (n,)"
    try:
        shape = tuple(value)
    except TypeError:
        raise _invalid(caller, "input_shape", expected, value) from None
    if len(shape) not in (1, 2, 3) or not all(_POSITIVE.is_satisfied_by(v) for v in shape):
        raise _invalid(caller, "input_shape", expected, value)
    if len(shape) == 1:
        # flat images: n = H*W (one channel) or 3*H*W (RGB) with square images
        n = shape[0]
        side, side3 = math.isqrt(n), math.isqrt(n // 3)
        if side * side == n:
            return (1, side, side)
        if n % 3 == 0 and 3 * side3 * side3 == n:
            return (3, side3, side3)
        raise _invalid(
            caller, "input_shape", "(C, H, W), or a flat (n,) of a square image (n = H*W or "
            "3*H*W with H == W)", value,
        )
    if len(shape) == 2:
        shape = (1, *shape)
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def _make_activation(activation: str | type[nn.Module]) -> nn.Module:
    """An instance of the activation (a name of ``_ACTIVATIONS`` or an ``nn.Module`` class)."""
    if isinstance(activation, str):
        return _ACTIVATIONS[activation]()
    return activation()


def _check_activation(activation: Any, caller: str) -> None:
    if not (
        StrOptions(set(_ACTIVATIONS)).is_satisfied_by(activation)
        or (isinstance(activation, type) and issubclass(activation, nn.Module))
    ):
        raise _invalid(
            caller, "activation", f"a str among {sorted(_ACTIVATIONS)} or an nn.Module class",
            activation,
        )


def _as_image_batch(X: torch.Tensor, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Reshape ``X`` to ``(N, C, H, W)``; accepts flat ``(N, C*H*W)`` or ``(N, H, W)``."""
    if X.dim() == 4:
        return X
    n_expected = math.prod(input_shape)
    if X.dim() in (2, 3) and math.prod(X.shape[1:]) == n_expected:
        return X.reshape(X.shape[0], *input_shape)
    raise ValueError(
        f"X must have shape (N, {', '.join(map(str, input_shape))}) or (N, {n_expected}), "
        f"got {tuple(X.shape)}."
    )


# ----------------------------------------------------------------------------- MLP
class MLP(nn.Module):
    """Fully connected network for tabular data, returning logits.

    Parameters
    ----------
    n_features : int
        Number of input features (injected by the estimators from ``X.shape[1]``).
    n_classes : int
        Number of output logits (injected by the estimators).
    hidden_units : sequence of int, default=(64, 64)
        Width of each hidden layer. ``()`` gives a multinomial logistic regression.
    activation : {"relu", "tanh", "sigmoid", "gelu", "leaky_relu"} or nn.Module class, \
default="relu"
        Non-linearity after each hidden layer.
    dropout : float in [0, 1), default=0.0
        Dropout probability after each hidden activation (no dropout layer when 0).

    Attributes
    ----------
    layers : torch.nn.Sequential
        ``Linear, act, [Dropout], ..., Linear``; the ``Linear`` layers are what pruning acts on.

    Examples
    --------
    >>> import torch
    >>> net = MLP(n_features=5, n_classes=2, hidden_units=(8,))
    >>> net(torch.zeros(3, 5)).shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        hidden_units: Sequence[int] = (64, 64),
        activation: str | type[nn.Module] = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check("MLP", n_features=n_features, n_classes=n_classes, dropout=dropout)
        _check_activation(activation, "MLP")  # even when there is no hidden layer
        hidden_units = _int_sequence(hidden_units, "hidden_units", "MLP", allow_empty=True)

        layers: list[nn.Module] = []
        n_in = n_features
        for width in hidden_units:
            layers.append(nn.Linear(n_in, width))
            layers.append(_make_activation(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = width
        layers.append(nn.Linear(n_in, n_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(n_samples, n_classes)`` for ``X`` of shape
        ``(n_samples, n_features)``."""
        return self.layers(X)


# ----------------------------------------------------------------------------- SmallCNN
class SmallCNN(nn.Module):
    """Small convolutional network for images, returning logits.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of one image (``(H, W)`` means one channel); injected by the estimators
        from ``X.shape[1:]``. A flat ``(n,)`` shape is read as a square image,
        ``(1, s, s)`` when ``n == s*s`` or ``(3, s, s)`` when ``n == 3*s*s``; otherwise pass
        ``(C, H, W)`` explicitly.
    n_classes : int
        Number of output logits.
    channels : sequence of int, default=(16, 32)
        Output channels of each block ``Conv2d(3x3, padding=1), BatchNorm2d, ReLU,
        MaxPool2d(2)``.
    hidden_units : int, default=64
        Width of the hidden linear layer of the classifier.
    dropout : float in [0, 1), default=0.0
        Dropout probability before the last linear layer.

    Attributes
    ----------
    features : torch.nn.Sequential
        The convolutional blocks.
    classifier : torch.nn.Sequential
        ``Flatten, Linear, ReLU, [Dropout], Linear``.

    Notes
    -----
    ``forward`` accepts ``(N, C, H, W)`` or flat ``(N, C*H*W)`` input.

    Examples
    --------
    >>> import torch
    >>> net = SmallCNN(input_shape=(1, 28, 28), n_classes=10)
    >>> net(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden_units: int = 64,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        _check("SmallCNN", n_classes=n_classes, hidden_units=hidden_units, dropout=dropout)
        self.input_shape = _check_input_shape(input_shape, "SmallCNN")
        channels = _int_sequence(channels, "channels", "SmallCNN", allow_empty=False)

        c, h, w = self.input_shape
        if h < 2 ** len(channels) or w < 2 ** len(channels):
            side = 2 ** len(channels)
            raise _invalid(
                "SmallCNN", "input_shape",
                f"at least {side} x {side} for {len(channels)} pooling blocks "
                f"(channels={channels})", input_shape,
            )
        blocks: list[nn.Module] = []
        for out in channels:
            blocks += [
                nn.Conv2d(c, out, kernel_size=3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten(), nn.Linear(c * h * w, hidden_units), nn.ReLU()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(hidden_units, n_classes))
        self.classifier = nn.Sequential(*head)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, n_classes)``."""
        return self.classifier(self.features(_as_image_batch(X, self.input_shape)))


# ----------------------------------------------------------------------------- ResNet-18
class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with batch norm and a residual connection.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    stride : int, default=1
        Stride of the first convolution; when it is not 1 or the channels change, the
        shortcut is a 1x1 convolution with batch norm.

    Examples
    --------
    >>> import torch
    >>> block = BasicBlock(8, 16, stride=2)
    >>> block(torch.zeros(2, 8, 32, 32)).shape
    torch.Size([2, 16, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(X)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(X))


class ResNet18(nn.Module):
    """ResNet-18 style network for small images (28x28, 32x32), returning logits.

    A 3x3 stem (stride 1, no max-pool, as in CIFAR ResNets), four stages of two
    :class:`BasicBlock` each with ``width, 2*width, 4*width, 8*width`` channels (stages 2-4
    halve the resolution), global average pooling and a linear head.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)`` of one image (``(H, W)`` means one channel); injected by the estimators.
        A flat ``(n,)`` is read as a square image as in :class:`SmallCNN`.
    n_classes : int
        Number of output logits.
    width : int, default=64
        Channels of the stem and first stage (64 gives the standard ResNet-18 widths).

    Attributes
    ----------
    stem : torch.nn.Sequential
        ``Conv2d(3x3), BatchNorm2d, ReLU``.
    layer1, layer2, layer3, layer4 : torch.nn.Sequential
        Two :class:`BasicBlock` each.
    pool : torch.nn.AdaptiveAvgPool2d
    fc : torch.nn.Linear

    Notes
    -----
    ``forward`` accepts ``(N, C, H, W)`` or flat ``(N, C*H*W)`` input.

    Examples
    --------
    >>> import torch
    >>> net = ResNet18(input_shape=(3, 32, 32), n_classes=10, width=8)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, width: int = 64) -> None:
        super().__init__()
        _check("ResNet18", n_classes=n_classes, width=width)
        self.input_shape = _check_input_shape(input_shape, "ResNet18")
        c = self.input_shape[0]
        self.stem = nn.Sequential(
            nn.Conv2d(c, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages = []
        in_ch = width
        for i, out_ch in enumerate(widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch)]
            stages.append(nn.Sequential(*blocks))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, n_classes)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, n_classes)``."""
        out = self.stem(_as_image_batch(X, self.input_shape))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(torch.flatten(self.pool(out), 1))
