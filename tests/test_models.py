"""Tests of fairprune_sk.models: shapes, parameter counts, argument checks, training."""

import re

import pytest
import torch
from torch import nn

from fairprune_sk.models import MLP, ResNet18, SmallCNN


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- MLP
def test_mlp_output_shape_and_layers():
    net = MLP(n_features=7, n_classes=3, hidden_units=(16, 8))
    assert net(torch.randn(5, 7)).shape == (5, 3)
    kinds = [type(m) for m in net.layers]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]


def test_mlp_parameter_count():
    net = MLP(n_features=20, n_classes=2, hidden_units=(64, 64))
    assert n_params(net) == (20 * 64 + 64) + (64 * 64 + 64) + (64 * 2 + 2)


def test_mlp_logistic_regression():
    net = MLP(n_features=4, n_classes=2, hidden_units=())
    assert len(net.layers) == 1 and isinstance(net.layers[0], nn.Linear)
    assert net(torch.randn(3, 4)).shape == (3, 2)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", nn.ELU])
def test_mlp_activations(activation):
    net = MLP(3, 2, hidden_units=(4,), activation=activation)
    assert net(torch.randn(2, 3)).shape == (2, 2)


def test_mlp_dropout_layers():
    net = MLP(3, 2, hidden_units=(4, 4), dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in net.layers) == 2
    assert not any(isinstance(m, nn.Dropout) for m in MLP(3, 2).layers)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"n_features": 0}, "n_features"),
        ({"n_features": 2.5}, "n_features"),
        ({"n_classes": -1}, "n_classes"),
        ({"hidden_units": (8, 0)}, "hidden_units"),
        ({"hidden_units": "64"}, "hidden_units"),
        ({"activation": "swish"}, "activation"),
        ({"activation": 3}, "activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
    ],
)
def test_mlp_validation(kwargs, name):
    params = {"n_features": 3, "n_classes": 2, **kwargs}
    got = re.escape(repr(next(iter(kwargs.values()))))
    expected = f"^The '{name}' parameter of MLP must be .*Got {got} instead.$"
    with pytest.raises(ValueError, match=expected):
        MLP(**params)


# ----------------------------------------------------------------------------- SmallCNN
def test_small_cnn_shapes_and_flat_input():
    net = SmallCNN(input_shape=(1, 28, 28), n_classes=10)
    net.eval()
    x = torch.randn(4, 1, 28, 28)
    out = net(x)
    assert out.shape == (4, 10)
    torch.testing.assert_close(net(x.reshape(4, -1)), out)
    kinds = [type(m) for m in net.features]
    assert kinds == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d] * 2


def test_small_cnn_parameter_count():
    net = SmallCNN(input_shape=(1, 28, 28), n_classes=10, channels=(16, 32), hidden_units=64)
    expected = (
        (1 * 16 * 9 + 16)
        + 2 * 16  # conv1 + bn1
        + (16 * 32 * 9 + 32)
        + 2 * 32  # conv2 + bn2
        + (32 * 7 * 7 * 64 + 64)  # hidden linear
        + (64 * 10 + 10)
    )
    assert n_params(net) == expected


def test_small_cnn_flat_input_shape_is_read_as_square_image():
    assert SmallCNN(input_shape=(784,), n_classes=2).input_shape == (1, 28, 28)
    assert SmallCNN(input_shape=(3 * 32 * 32,), n_classes=2).input_shape == (3, 32, 32)
    assert SmallCNN(input_shape=(28, 28), n_classes=2).input_shape == (1, 28, 28)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"input_shape": (10,)}, "input_shape"),
        ({"input_shape": (1, 2, 3, 4)}, "input_shape"),
        ({"input_shape": (1, 2, 2)}, "input_shape"),  # too small for two poolings
        ({"input_shape": (1, 0, 28)}, "input_shape"),
        ({"n_classes": 0}, "n_classes"),
        ({"channels": ()}, "channels"),
        ({"hidden_units": 0}, "hidden_units"),
        ({"dropout": 2}, "dropout"),
    ],
)
def test_small_cnn_validation(kwargs, name):
    params = {"input_shape": (1, 28, 28), "n_classes": 2, **kwargs}
    got = re.escape(repr(next(iter(kwargs.values()))))
    expected = f"^The '{name}' parameter of SmallCNN must be .*Got {got} instead.$"
    with pytest.raises(ValueError, match=expected):
        SmallCNN(**params)


def test_small_cnn_wrong_input_size():
    net = SmallCNN(input_shape=(1, 28, 28), n_classes=2)
    with pytest.raises(ValueError, match="X must have shape"):
        net(torch.randn(2, 100))


# ----------------------------------------------------------------------------- ResNet18
def test_resnet18_shapes_and_flat_input():
    net = ResNet18(input_shape=(3, 32, 32), n_classes=10, width=8)
    net.eval()
    x = torch.randn(2, 3, 32, 32)
    out = net(x)
    assert out.shape == (2, 10)
    torch.testing.assert_close(net(x.reshape(2, -1)), out)
    gray = ResNet18(input_shape=(1, 28, 28), n_classes=3, width=8)
    assert gray(torch.randn(2, 784)).shape == (2, 3)


def test_resnet18_structure_and_parameter_count():
    net = ResNet18(input_shape=(3, 32, 32), n_classes=10)
    # the CIFAR-style ResNet-18 (3x3 stem, no max-pool) has 11,173,962 parameters
    assert n_params(net) == 11_173_962
    for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
        assert len(stage) == 2
    assert net.fc.in_features == 512
    small = ResNet18(input_shape=(3, 32, 32), n_classes=10, width=8)
    assert small.fc.in_features == 64


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"width": 0}, "width"),
        ({"n_classes": 1.5}, "n_classes"),
        ({"input_shape": 5}, "input_shape"),
    ],
)
def test_resnet18_validation(kwargs, name):
    params = {"input_shape": (3, 32, 32), "n_classes": 2, "width": 8, **kwargs}
    got = re.escape(repr(next(iter(kwargs.values()))))
    expected = f"^The '{name}' parameter of ResNet18 must be .*Got {got} instead.$"
    with pytest.raises(ValueError, match=expected):
        ResNet18(**params)


# ----------------------------------------------------------------------------- all models
def _two_class_images(n: int, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
    """8x8 one-channel images; class 1 is brighter in ``rows`` (all of it by default)."""
    X = torch.rand(n, 1, 8, 8)
    y = torch.arange(n) % 2
    X[y == 1, :, rows] += 1.0
    return X, y


def _two_class_points(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.randn(n, 2)
    return X, (X[:, 0] + X[:, 1] > 0).long()


@pytest.mark.parametrize(
    "make_module, make_data, n, lr, steps, factor",
    [
        (lambda: MLP(2, 2, hidden_units=(8,)), _two_class_points, 64, 0.5, 30, 0.5),
        (lambda: SmallCNN(input_shape=(1, 8, 8), n_classes=2, channels=(4,), hidden_units=8),
         lambda n: _two_class_images(n, slice(4)), 32, 0.1, 20, 1.0),  # bright top half
        (lambda: ResNet18(input_shape=(1, 8, 8), n_classes=2, width=4),
         _two_class_images, 16, 0.05, 10, 1.0),
    ],
    ids=["MLP", "SmallCNN", "ResNet18"],
)
def test_sgd_reduces_loss(make_module, make_data, n, lr, steps, factor):
    """Full-batch SGD on an easy problem lowers the loss below ``factor`` times the first."""
    torch.manual_seed(0)
    X, y = make_data(n)
    net = make_module()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    first = loss_fn(net(X), y).item()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(X), y).backward()
        opt.step()
    assert loss_fn(net(X), y).item() < factor * first
