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

import torch
from torch import nn

__all__ = ["MLP", "SmallCNN", "ResNet18", "BasicBlock"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


# ----------------------------------------------------------------------------- validation
def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def _check_dropout(value, name: str = "dropout") -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}.")
    return float(value)


def _check_int_sequence(value, name: str, *, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}.")
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{name} must contain at least one positive integer, got {value!r}.")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
            raise ValueError(f"{name} must be a sequence of positive integers, got {value!r}.")
    return tuple(int(v) for v in value)


def _check_input_shape(value) -> tuple[int, int, int]:
    try:
        shape = tuple(value)
    except TypeError:
        shape = None
    if shape is None or len(shape) not in (1, 2, 3):
        raise ValueError(
            f"input_shape must be a tuple (C, H, W) (or (H, W) for one channel), got {value!r}."
        )
    if len(shape) == 1:
        # flat images: n = H*W (one channel) or 3*H*W (RGB) with square images
        n = shape[0]
        if isinstance(n, Integral) and not isinstance(n, bool) and n > 0:
            side = math.isqrt(n)
            side3 = math.isqrt(n // 3)
            if side * side == n:
                return (1, side, side)
            if n % 3 == 0 and 3 * side3 * side3 == n:
                return (3, side3, side3)
        raise ValueError(
            f"input_shape {value!r} is flat and not a square image (H*W or 3*H*W with H == W); "
            "pass input_shape=(C, H, W) explicitly."
        )
    if len(shape) == 2:
        shape = (1, *shape)
    for v in shape:
        if isinstance(v, bool) or not isinstance(v, Integral) or v < 1:
            raise ValueError(f"input_shape must hold positive integers, got {value!r}.")
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def _make_activation(activation) -> nn.Module:
    if isinstance(activation, str):
        try:
            return _ACTIVATIONS[activation]()
        except KeyError:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)} or an nn.Module class, "
                f"got {activation!r}."
            ) from None
    if isinstance(activation, type) and issubclass(activation, nn.Module):
        return activation()
    raise ValueError(
        f"activation must be one of {sorted(_ACTIVATIONS)} or an nn.Module class, "
        f"got {activation!r}."
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
        n_features = _check_positive_int(n_features, "n_features")
        n_classes = _check_positive_int(n_classes, "n_classes")
        hidden_units = _check_int_sequence(hidden_units, "hidden_units", allow_empty=True)
        dropout = _check_dropout(dropout)
        _make_activation(activation)  # validate even when there is no hidden layer

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
        self.input_shape = _check_input_shape(input_shape)
        n_classes = _check_positive_int(n_classes, "n_classes")
        channels = _check_int_sequence(channels, "channels", allow_empty=False)
        hidden_units = _check_positive_int(hidden_units, "hidden_units")
        dropout = _check_dropout(dropout)

        c, h, w = self.input_shape
        if h < 2 ** len(channels) or w < 2 ** len(channels):
            raise ValueError(
                f"input_shape {self.input_shape} is too small for {len(channels)} pooling "
                f"blocks (channels={channels}): H and W must be >= {2 ** len(channels)}."
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
        self.input_shape = _check_input_shape(input_shape)
        n_classes = _check_positive_int(n_classes, "n_classes")
        width = _check_positive_int(width, "width")
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
