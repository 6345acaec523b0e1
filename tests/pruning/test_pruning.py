"""Tests of fairprune_sk.pruning: pure functions on torch modules."""

from __future__ import annotations

import copy
import math
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from fairprune_sk.pruning import (
    DATA_DRIVEN_METHODS,
    PRUNING_METHODS,
    compact,
    copy_module,
    detach_pruned_weights,
    effective_state_dict,
    is_pruned,
    layer_sparsity,
    make_permanent,
    prunable_tensors,
    prune_module,
    sparsity,
    unpruned_copy,
    validate_method,
    validate_rate,
)


# ----------------------------------------------------------------------------- tiny modules
def mlp(sizes=(20, 64, 64, 2), seed=0, act=nn.ReLU) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), act()]
    return nn.Sequential(*layers[:-1])


class LayersMLP(nn.Module):
    """Exposes its chain as ``self.layers``, like the package's MLP."""

    def __init__(self, sizes=(12, 32, 16, 3)):
        super().__init__()
        self.layers = mlp(sizes, seed=1)

    def forward(self, x):
        return self.layers(x)


class CNN(nn.Module):
    """(Conv-BN-ReLU-MaxPool) x 2, Flatten, Linear; ``features`` + ``classifier``."""

    def __init__(self, channels=(8, 16), n_classes=4, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.input_shape = (1, 16, 16)  # as the package's image models: compact traces with it
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * 4 * 4, n_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class UntraceableCNN(CNN):
    """Same chain, but a data-dependent branch that torch.fx cannot trace."""

    def forward(self, x):
        if x.dim() == 3:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        return self.out(h + self.fc2(h))


def warm_batchnorm(net: nn.Module, shape, steps=3) -> nn.Module:
    """Give BatchNorm non-trivial running statistics, then switch to eval mode."""
    net.train()
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(32, *shape) * 2 + 0.5)
    return net.eval()


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def masks(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: getattr(sub, "weight_mask", torch.ones_like(sub.weight)).clone()
        for name, sub, _ in prunable_tensors(net)
    }


def zeros_of(net: nn.Module) -> int:
    return sum(int((sub.weight == 0).sum()) for _, sub, _ in prunable_tensors(net))


def n_weights(net: nn.Module) -> int:
    return sum(sub.weight.numel() for _, sub, _ in prunable_tensors(net))


def data_for(method: str, n_in: int, n_classes: int = 2, n: int = 48) -> dict:
    """``X, y, groups`` keywords for a data-driven method; none for the others."""
    if method not in DATA_DRIVEN_METHODS:
        return {}
    generator = torch.Generator().manual_seed(0)
    return {"X": torch.randn(n, n_in, generator=generator),
            "y": torch.randint(0, n_classes, (n,), generator=generator),
            "groups": torch.arange(n) % 3}


# ----------------------------------------------------------------------------- validation
RATE_MESSAGE = r"parameter{} must be a float in the range \[0.0, 1.0\). Got {} instead."


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "a", True, float("nan"), None])
def test_validate_rate_rejects(bad):
    got = re.escape(repr(bad))
    with pytest.raises(ValueError, match="The 'rate' " + RATE_MESSAGE.format("", got)):
        validate_rate(bad)
    with pytest.raises(ValueError, match=(
            "The 'pruning_rate' " + RATE_MESSAGE.format(" of PrunableNetClassifier.prune", got))):
        validate_rate(bad, "pruning_rate", "PrunableNetClassifier.prune")
    with pytest.raises(ValueError, match="The 'rate' " + RATE_MESSAGE.format(
            " of prune_module", got)):
        prune_module(mlp(), bad)


def test_validate_rate_and_method_accept():
    assert validate_rate(0) == 0.0 and isinstance(validate_rate(np.float32(0.5)), float)
    for method in PRUNING_METHODS:
        assert validate_method(method) == method


@pytest.mark.parametrize("bad", ["magnitude", None, 3])
def test_validate_method_rejects(bad):
    expected = r"The 'method' parameter{} must be a str among \{{.*'global_magnitude'.*\}}"
    with pytest.raises(ValueError, match=expected.format("")):
        validate_method(bad)
    with pytest.raises(ValueError, match=expected.format(" of prune_module")):
        prune_module(mlp(), 0.5, bad)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=(
            r"The 'min_layer_density' parameter of prune_module must be a float in the range "
            r"\[0.0, 1.0\]. Got 1.5 instead.")):
        prune_module(mlp(), 0.5, min_layer_density=1.5)
    with pytest.raises(ValueError, match="The 'random_state' parameter of prune_module must be"):
        prune_module(mlp(), 0.5, "random", random_state="seed")
    with pytest.raises(ValueError, match="The 'keep_dense' parameter of prune_module must be"):
        prune_module(mlp(), 0.5, keep_dense=3)
    with pytest.raises(ValueError, match="The 'example_inputs' parameter of compact must be"):
        compact(mlp(), example_inputs=[[0.0] * 20])
    with pytest.raises(ValueError, match="no prunable layer left"):
        prune_module(mlp((4, 2)), 0.5, keep_dense="first")
    for function in (sparsity, compact, copy_module, is_pruned, prunable_tensors):
        with pytest.raises(TypeError, match=(
                f"The 'module' parameter of {function.__name__} must be an instance of "
                "'torch.nn.modules.module.Module'. Got 'net' instead.")):
            function("net")


# ----------------------------------------------------------------------------- selection
def test_prunable_tensors_only_linear_and_conv_weights_in_order():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Embedding(3, 4),
        nn.LayerNorm(4), nn.Linear(4, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 2),
    )  # fmt: skip
    found = prunable_tensors(net)
    assert [(name, pname) for name, _, pname in found] == [
        ("0", "weight"),
        ("5", "weight"),
        ("6", "weight"),
        ("7", "weight"),
    ]
    assert found[0][1] is net[0]
    assert [name for name, _, _ in prunable_tensors(net, structured=True)] == ["0", "5", "6"]


def test_keep_dense_first_last_and_by_name():
    net = mlp((10, 8, 8, 8, 2))  # layers 0, 2, 4, 6
    names = lambda **kw: [n for n, _, _ in prunable_tensors(net, **kw)]  # noqa: E731
    assert names(keep_dense=["first"]) == ["2", "4", "6"]
    assert names(keep_dense="last") == ["0", "2", "4"]
    assert names(keep_dense=("first", "4")) == ["2", "6"]
    assert names(keep_dense=["last"], structured=True) == ["0", "2", "4"]
    prune_module(net, 0.6, keep_dense=["first", "4"])
    dense = layer_sparsity(net)
    assert dense["0"] == 0.0 and dense["4"] == 0.0
    assert dense["2"] > 0 and dense["6"] > 0
    assert not hasattr(net[0], "weight_mask")


def test_keep_dense_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=(
            r"The 'keep_dense' parameter of prunable_tensors must be names of prunable layers "
            r"among \['first', 'last', '0', '2', '4'\]. Got unknown name\(s\) \['fc9'\] instead.")):
        prunable_tensors(mlp(), keep_dense=["fc9"])
    with pytest.raises(ValueError, match=(  # "1" is the ReLU, not prunable
            r"The 'keep_dense' parameter of prune_module must be names of prunable layers .* "
            r"Got unknown name\(s\) \['1'\] instead.")):
        prune_module(mlp(), 0.5, keep_dense=["1"])


# ----------------------------------------------------------------------------- magnitude
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.33, 0.5, 0.77, 0.9, 0.999])
def test_global_magnitude_reaches_rate(rate):
    net = mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.999 may empty a layer
        prune_module(net, rate)
    total = n_weights(net)
    assert abs(zeros_of(net) - round(rate * total)) <= 1
    assert sparsity(net) == pytest.approx(round(rate * total) / total, abs=1 / total)


def test_global_magnitude_ranks_across_layers():
    net = mlp()
    with torch.no_grad():
        net[2].weight.mul_(0.05)  # middle layer: much smaller weights
    weights = [sub.weight.detach().numpy().copy() for _, sub, _ in prunable_tensors(net)]
    flat = np.concatenate([np.abs(w).ravel() for w in weights])
    k = round(0.4 * flat.size)
    expected = np.ones(flat.size, bool)
    expected[np.argsort(flat, kind="stable")[:k]] = False  # the k smallest |w| globally
    prune_module(net, 0.4)
    got = np.concatenate([m.numpy().ravel() != 0 for m in masks(net).values()])
    np.testing.assert_array_equal(got, expected)
    per_layer = layer_sparsity(net)
    assert per_layer["2"] > 0.5 and per_layer["0"] < 0.05  # not the same rate in each layer


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.3, 0.9])
def test_layer_magnitude_gives_each_layer_its_rate(rate):
    net = mlp()
    weights = {name: sub.weight.detach().clone() for name, sub, _ in prunable_tensors(net)}
    prune_module(net, rate, "layer_magnitude")
    for name, sub, _ in prunable_tensors(net):
        n = sub.weight.numel()
        assert int((sub.weight == 0).sum()) == round(rate * n)
        # the kept weights are the largest of the layer
        w = weights[name].abs()
        kept = sub.weight_mask.bool()
        if (~kept).any():
            assert w[~kept].max() <= w[kept].min()
    n_layers = len(prunable_tensors(net))
    assert abs(zeros_of(net) - round(rate * n_weights(net))) <= n_layers


@pytest.mark.parametrize("method", ["global_magnitude", "layer_magnitude"])
def test_magnitude_ranks_current_weights_not_the_stale_attribute(method):
    # after an optimizer step, `weight` still holds the value of the last forward pass
    net = mlp()
    prune_module(net, 0.5, method)
    with torch.no_grad():
        for _, sub, _ in prunable_tensors(net):
            sub.weight_orig.copy_(torch.randn_like(sub.weight_orig))
    alive = {name: m.bool() for name, m in masks(net).items()}
    prune_module(net, 0.75, method)
    for name, sub, _ in prunable_tensors(net):
        current = sub.weight_orig.detach().abs()
        newly = alive[name] & ~sub.weight_mask.bool()
        kept = sub.weight_mask.bool()
        if method == "layer_magnitude" and newly.any():
            assert current[newly].max() <= current[kept].min()
    if method == "global_magnitude":
        current = torch.cat([s.weight_orig.detach().abs().flatten() for _, s, _ in
                             prunable_tensors(net)])  # fmt: skip
        now = torch.cat([m.flatten().bool() for m in masks(net).values()])
        before = torch.cat([m.flatten() for m in alive.values()])
        assert current[before & ~now].max() <= current[now].min()


@pytest.mark.parametrize("method", ["global_magnitude", "layer_magnitude", "random"])
def test_pruning_is_cumulative(method):
    net = mlp()
    prune_module(net, 0.5, method, random_state=0)
    first = masks(net)
    with torch.no_grad():  # as after fine-tuning: the weights change, the masks hold
        for _, sub, _ in prunable_tensors(net):
            sub.weight_orig.add_(torch.randn_like(sub.weight_orig))
    prune_module(net, 0.8, method, random_state=1)
    for name, mask in masks(net).items():
        assert not mask[first[name] == 0].any(), f"layer {name} restored pruned weights"
    assert abs(zeros_of(net) - round(0.8 * n_weights(net))) <= len(first)
    # the pre-hook weight is recomputed from the changed weight_orig
    assert sparsity(net) == pytest.approx(0.8, abs=len(first) / n_weights(net))


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_rate_below_current_sparsity_raises(method):
    net = mlp()
    data = data_for(method, 20)
    prune_module(net, 0.6, method, random_state=0, **data)
    before = {k: v.clone() for k, v in masks(net).items()}
    with pytest.raises(ValueError, match="below the current sparsity .* cumulative"):
        prune_module(net, 0.3, method, random_state=0, **data)
    for name, mask in masks(net).items():  # nothing was changed by the failed call
        assert torch.equal(mask, before[name])
    prune_module(net, 0.6, method, random_state=0, **data)  # same rate: allowed, no change
    for name, mask in masks(net).items():
        assert torch.equal(mask, before[name])


# ----------------------------------------------------------------------------- random
def test_random_is_reproducible_and_seeded():
    def run(seed):
        net = mlp()
        prune_module(net, 0.5, "random", random_state=seed)
        return masks(net)

    torch_state = torch.get_rng_state()
    a, b, c = run(0), run(0), run(1)
    d, e = run(np.random.RandomState(0)), run(np.random.RandomState(0))
    assert torch.equal(torch.get_rng_state(), torch_state)  # global torch RNG untouched
    for name in a:
        assert torch.equal(a[name], b[name]) and torch.equal(d[name], e[name])
    assert any(not torch.equal(a[name], c[name]) for name in a)
    # random does not follow magnitude: pruned weights are not the smallest ones
    net = mlp()
    w = net[0].weight.detach().abs().clone()
    prune_module(net, 0.5, "random", random_state=0)
    assert w[net[0].weight_mask == 0].max() > w[net[0].weight_mask == 1].min()
    assert layer_sparsity(net)["0"] == 0.5


# ----------------------------------------------------------------------------- structured
@pytest.mark.parametrize(("method", "order"), [("structured_l1", 1), ("structured_l2", 2)])
def test_structured_zeroes_whole_rows_and_leaves_last_layer(method, order):
    net = mlp((10, 20, 16, 3))
    norms = {name: sub.weight.detach().norm(p=order, dim=1) for name, sub, _ in
             prunable_tensors(net)}  # fmt: skip
    prune_module(net, 0.5, method)
    for name in ("0", "2"):
        layer = net[int(name)]
        rows_zero = (layer.weight == 0).all(dim=1)
        assert int(rows_zero.sum()) == layer.out_features // 2
        assert torch.equal((layer.weight != 0).any(dim=1), ~rows_zero)  # rows all or nothing
        assert (layer.bias[rows_zero] == 0).all()  # a pruned unit is dead
        # the pruned rows are those with the smallest L1 / L2 norm
        assert norms[name][rows_zero].max() <= norms[name][~rows_zero].min()
    assert not hasattr(net[4], "weight_mask") and layer_sparsity(net)["4"] == 0.0


def test_structured_zeroes_whole_conv_filters_and_batchnorm_channels():
    net = warm_batchnorm(CNN(), (1, 16, 16))
    prune_module(net, 0.5, "structured_l2")
    for i in (0, 4):
        conv, bn = net.features[i], net.features[i + 1]
        dead = (conv.weight == 0).flatten(1).all(dim=1)
        assert int(dead.sum()) == conv.out_channels // 2
        assert ((conv.weight != 0).flatten(1).any(dim=1) == ~dead).all()
        assert (conv.bias[dead] == 0).all()
        assert (bn.weight[dead] == 0).all() and (bn.bias[dead] == 0).all()
    assert layer_sparsity(net)["classifier.1"] == 0.0
    # a pruned filter outputs exactly zero after BatchNorm, in eval and in train mode
    x = torch.randn(4, 1, 16, 16)
    dead = (net.features[0].weight == 0).flatten(1).all(dim=1)
    for mode in (False, True):
        net.train(mode)
        assert (net.features[:3](x)[:, dead] == 0).all()


def test_structured_is_cumulative():
    net = mlp((10, 20, 16, 3))
    prune_module(net, 0.25, "structured_l1")
    dead_before = (net[0].weight == 0).all(dim=1)
    prune_module(net, 0.5, "structured_l1")
    dead_after = (net[0].weight == 0).all(dim=1)
    assert dead_after[dead_before].all() and int(dead_after.sum()) == 10


# ----------------------------------------------------------------------------- emptied layers
def shrunk_mlp() -> nn.Sequential:
    net = mlp((20, 64, 64, 2))
    with torch.no_grad():
        net[2].weight.mul_(0.01)
    return net


def test_global_pruning_warns_when_a_layer_is_emptied():
    net = shrunk_mlp()
    with pytest.warns(
        UserWarning, match=r"emptied layer\(s\) \['2'.*keep_dense=.*min_layer_density"
    ) as record:
        prune_module(net, 0.9)
    assert record[0].filename == __file__  # the warning points at the caller's line
    assert layer_sparsity(net)["2"] == 1.0


def test_min_layer_density_prevents_emptied_layers():
    net = shrunk_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune_module(net, 0.9, min_layer_density=0.05)
    for name, _, _ in prunable_tensors(net):
        n = net[int(name)].weight.numel()
        kept = int((net[int(name)].weight != 0).sum())
        assert kept >= np.ceil(0.05 * n)
    assert abs(zeros_of(net) - round(0.9 * n_weights(net))) <= 1
    with pytest.raises(ValueError, match="min_layer_density=0.5 .* cannot be reached"):
        prune_module(shrunk_mlp(), 0.9, min_layer_density=0.5)
    # layer-wise methods: the density caps each layer's rate
    net = mlp()
    prune_module(net, 0.9, "layer_magnitude", min_layer_density=0.2)
    assert all(s == pytest.approx(0.8, abs=0.01) for s in layer_sparsity(net).values())


def test_keep_dense_prevents_emptied_layers():
    net = shrunk_mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune_module(net, 0.6, keep_dense=["2", "last"])
    assert layer_sparsity(net)["2"] == 0.0


# ----------------------------------------------------------------------------- brute force
# Which weights each method removes, against an independent numpy sort. The ranking
# (torch.topk) does not define the order of equal scores, so the exact comparisons use
# continuous random weights (no ties) and the tie tests check what ties leave defined.
def prune_smallest(scores: np.ndarray, n: int) -> np.ndarray:
    """Keep-mask of ``scores`` with its ``n`` smallest entries pruned (ties: first first)."""
    flat = scores.ravel()
    keep = np.ones(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:n]] = False
    return keep.reshape(scores.shape)


def pruned_count(size: int, rate: float, min_layer_density: float) -> int:
    """The documented count of one layer: round(rate * n), capped by the density floor."""
    return min(round(rate * size), size - math.ceil(min_layer_density * size))


def np_weights(net: nn.Module) -> dict[str, np.ndarray]:
    return {name: sub.weight.detach().numpy().copy() for name, sub, _ in prunable_tensors(net)}


def keep_masks(net: nn.Module) -> dict[str, np.ndarray]:
    return {name: mask.numpy() != 0 for name, mask in masks(net).items()}


def expected_global(weights: dict[str, np.ndarray], rate: float, min_layer_density: float):
    """One ranking of |w| over all layers; each layer's ceil(d * n) largest |w| protected."""
    scores = {}
    for name, w in weights.items():
        score = np.abs(w).ravel().copy()
        floor = math.ceil(min_layer_density * score.size)
        score[np.argsort(-score, kind="stable")[:floor]] = np.inf
        scores[name] = score
    flat = np.concatenate(list(scores.values()))
    keep = prune_smallest(flat, round(rate * flat.size))
    bounds = np.cumsum([0] + [w.size for w in weights.values()])
    return {name: keep[lo:hi].reshape(w.shape)
            for (name, w), lo, hi in zip(weights.items(), bounds[:-1], bounds[1:], strict=True)}


def expected_layerwise(scores: dict[str, np.ndarray], rate: float, min_layer_density: float):
    return {name: prune_smallest(score, pruned_count(score.size, rate, min_layer_density))
            for name, score in scores.items()}


def expected_structured(weights: dict[str, np.ndarray], rate: float, min_layer_density: float,
                        order: int):
    """Whole output units (rows / filters) with the smallest L1 / L2 norm; last layer dense."""
    expected = {}
    for k, (name, w) in enumerate(weights.items()):
        rows = w.reshape(len(w), -1)
        if k == len(weights) - 1:
            expected[name] = np.ones_like(w, bool)
            continue
        norms = np.linalg.norm(rows, ord=order, axis=1)
        alive = prune_smallest(norms, pruned_count(len(norms), rate, min_layer_density))
        expected[name] = np.broadcast_to(alive.reshape((-1,) + (1,) * (w.ndim - 1)),
                                         w.shape).copy()
    return expected


def assert_same_masks(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=f"layer {name}")


@pytest.mark.parametrize("min_layer_density", [0.0, 0.05])
@pytest.mark.parametrize("rate", [0.3, 0.9])
def test_global_magnitude_removes_the_smallest_weights(rate, min_layer_density):
    net = shrunk_mlp()  # layer "2" is tiny: at 0.9 the density floor binds there
    weights = np_weights(net)
    expected = expected_global(weights, rate, min_layer_density)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0.9 without a floor empties layer "2"
        prune_module(net, rate, min_layer_density=min_layer_density)
    assert_same_masks(keep_masks(net), expected)
    if rate == 0.9 and min_layer_density:  # the floor changed the answer
        assert not np.array_equal(expected["2"], expected_global(weights, rate, 0.0)["2"])
        assert expected["2"].sum() == math.ceil(0.05 * weights["2"].size)


@pytest.mark.parametrize("min_layer_density", [0.0, 0.2])
@pytest.mark.parametrize("rate", [0.3, 0.9])
@pytest.mark.parametrize("method", ["layer_magnitude", "random"])
def test_layerwise_methods_remove_the_lowest_scores(method, rate, min_layer_density):
    net = mlp((12, 24, 16, 3))
    weights = np_weights(net)
    if method == "layer_magnitude":
        scores = {name: np.abs(w) for name, w in weights.items()}
    else:  # uniform scores from the documented generator: torch seed = random_state
        generator = torch.Generator().manual_seed(7)
        scores = {name: torch.rand(w.shape, generator=generator).numpy()
                  for name, w in weights.items()}
    expected = expected_layerwise(scores, rate, min_layer_density)
    prune_module(net, rate, method, min_layer_density=min_layer_density, random_state=7)
    assert_same_masks(keep_masks(net), expected)
    if rate == 0.9 and min_layer_density:
        assert all(m.mean() == pytest.approx(0.2, abs=0.02) for m in expected.values())


@pytest.mark.parametrize("min_layer_density", [0.0, 0.5])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
@pytest.mark.parametrize(("method", "order"), [("structured_l1", 1), ("structured_l2", 2)])
@pytest.mark.parametrize("make", [lambda: mlp((10, 20, 16, 3)), CNN], ids=["mlp", "cnn"])
def test_structured_removes_the_weakest_units(make, method, order, rate, min_layer_density):
    net = make()
    weights = np_weights(net)
    expected = expected_structured(weights, rate, min_layer_density, order)
    prune_module(net, rate, method, min_layer_density=min_layer_density)
    assert_same_masks(keep_masks(net), expected)


def test_structured_l1_and_l2_rankings_differ_here():
    # the structured tests above can tell L1 from L2 only if the two rankings differ (at 0.5)
    for make in (lambda: mlp((10, 20, 16, 3)), CNN):
        weights = np_weights(make())
        l1, l2 = (expected_structured(weights, 0.5, 0.0, order) for order in (1, 2))
        assert any(not np.array_equal(l1[name], l2[name]) for name in weights)


@pytest.mark.parametrize("method", ["global_magnitude", "layer_magnitude"])
def test_cumulative_pruning_removes_the_smallest_remaining_weights(method):
    # second pruning: the new cut ranks the *current* weights of the still-unpruned entries
    net = mlp((12, 24, 16, 3))
    prune_module(net, 0.4, method)
    with torch.no_grad():
        for _, sub, _ in prunable_tensors(net):
            sub.weight_orig.copy_(torch.randn_like(sub.weight_orig))
    current = {name: np.abs(sub.weight_orig.detach().numpy() * sub.weight_mask.numpy())
               for name, sub, _ in prunable_tensors(net)}  # pruned entries score 0
    if method == "global_magnitude":
        expected = expected_global(current, 0.7, 0.0)
    else:
        expected = expected_layerwise(current, 0.7, 0.0)
    prune_module(net, 0.7, method)
    assert_same_masks(keep_masks(net), expected)


def tied_mlp() -> nn.Sequential:
    """Magnitudes in {0.1, 0.2, 0.3} with random signs: every cut falls inside a tie."""
    net = mlp((12, 24, 16, 3))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, sub, _ in prunable_tensors(net):
            levels = torch.randint(1, 4, sub.weight.shape, generator=generator) / 10
            signs = torch.randint(0, 2, sub.weight.shape, generator=generator) * 2 - 1
            sub.weight.copy_(levels * signs)
    return net


def assert_cut_respects_magnitudes(before: np.ndarray, keep: np.ndarray, n_pruned: int):
    """Exactly ``n_pruned`` removed, and none larger than a kept one."""
    assert int((~keep).sum()) == n_pruned
    assert np.abs(before[~keep]).max() <= np.abs(before[keep]).min()


@pytest.mark.parametrize("min_layer_density", [0.0, 0.25])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.7])
def test_ties_global_magnitude_exact_count_never_a_larger_weight(rate, min_layer_density):
    net = tied_mlp()
    weights = np_weights(net)
    flat = np.concatenate([w.ravel() for w in weights.values()])
    cut = np.sort(np.abs(flat))[round(rate * flat.size) - 1]
    assert (np.abs(flat) == cut).sum() > 1  # the cut falls inside a tie
    prune_module(net, rate, min_layer_density=min_layer_density)
    got = keep_masks(net)
    if not min_layer_density:
        keep = np.concatenate([m.ravel() for m in got.values()])
        assert_cut_respects_magnitudes(flat, keep, round(rate * flat.size))
        return
    # with a floor: the total is exact, every layer keeps its floor, and inside each layer no
    # removed weight is larger than a kept one
    assert sum(int((~m).sum()) for m in got.values()) == round(rate * flat.size)
    for name, w in weights.items():
        keep = got[name]
        assert keep.sum() >= math.ceil(min_layer_density * w.size)
        assert np.abs(w[~keep]).max() <= np.abs(w[keep]).min()


@pytest.mark.parametrize("min_layer_density", [0.0, 0.3])
@pytest.mark.parametrize("rate", [0.25, 0.5, 0.8])
def test_ties_layer_magnitude_exact_count_never_a_larger_weight(rate, min_layer_density):
    net = tied_mlp()
    weights = np_weights(net)
    prune_module(net, rate, "layer_magnitude", min_layer_density=min_layer_density)
    for name, keep in keep_masks(net).items():
        w = weights[name]
        assert_cut_respects_magnitudes(w, keep, pruned_count(w.size, rate, min_layer_density))


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
@pytest.mark.parametrize(("method", "order"), [("structured_l1", 1), ("structured_l2", 2)])
def test_ties_structured_exact_count_never_a_stronger_unit(method, order, rate):
    # rows are sign-permuted copies of one vector of multiples of 1/8 (exact float sums),
    # scaled by 1 or 2: two groups of units with exactly equal norms
    net = mlp((10, 20, 16, 3))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, sub, _ in prunable_tensors(net):
            base = torch.randint(1, 5, (sub.weight.shape[1],), generator=generator) / 8
            for i in range(sub.weight.shape[0]):
                perm = torch.randperm(base.numel(), generator=generator)
                sign = torch.randint(0, 2, base.shape, generator=generator) * 2 - 1
                sub.weight[i] = base[perm] * sign * (1 + i % 2)
    weights = np_weights(net)
    prune_module(net, rate, method)
    got = keep_masks(net)
    for name in ("0", "2"):
        norms = np.linalg.norm(weights[name], ord=order, axis=1)
        alive = got[name].all(axis=1)
        assert np.array_equal(got[name].any(axis=1), alive)  # whole rows
        assert_cut_respects_magnitudes(norms, alive, round(rate * len(norms)))
    assert got["4"].all()


# ----------------------------------------------------------------------------- copies
def test_is_pruned_and_make_permanent_keep_values():
    net = mlp()
    assert not is_pruned(net)
    prune_module(net, 0.7)
    assert is_pruned(net)
    effective = {name: sub.weight.detach().clone() for name, sub, _ in prunable_tensors(net)}
    assert make_permanent(net) is net
    assert not is_pruned(net)
    for name, sub, _ in prunable_tensors(net):
        assert not hasattr(sub, "weight_orig") and not hasattr(sub, "weight_mask")
        assert isinstance(sub.weight, nn.Parameter)
        assert torch.equal(sub.weight.detach(), effective[name])
    assert "0.weight" in net.state_dict() and sparsity(net) == pytest.approx(0.7, abs=1e-3)


def forward_backward(net: nn.Module, n_features=20) -> torch.Tensor:
    x = torch.randn(16, n_features)
    out = net(x)
    out.sum().backward()
    return x


def test_deepcopy_and_pickle_after_forward_backward():
    net = prune_module(mlp(), 0.5)
    x = forward_backward(net)
    with pytest.raises(RuntimeError, match="deepcopy"):  # why detach_pruned_weights exists
        copy.deepcopy(net)
    assert detach_pruned_weights(net) is net
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        assert is_pruned(clone)
        assert torch.equal(clone(x), net(x))
        assert torch.equal(clone[0].weight_mask, net[0].weight_mask)
    # the module still trains with its masks after detaching
    forward_backward(net)
    assert net[0].weight_orig.grad is not None
    assert (net[0].weight_orig.grad[net[0].weight_mask == 0] == 0).all()


def test_copy_module_does_not_mutate_and_keeps_masks():
    net = prune_module(mlp(), 0.5)
    x = forward_backward(net)
    attr = net[0].weight
    clone = copy_module(net)
    assert net[0].weight is attr and not attr.is_leaf  # input untouched
    assert is_pruned(clone) and torch.equal(clone(x), net(x))
    with torch.no_grad():
        clone[0].weight_orig.zero_()
    assert net[0].weight_orig.abs().sum() > 0
    copy_module(clone)  # also works on a copy, and on an unpruned module
    copy_module(mlp())


def test_effective_state_dict_loads_into_fresh_module():
    net = prune_module(mlp(), 0.6)
    forward_backward(net)
    state = effective_state_dict(net)
    assert set(state) == set(mlp().state_dict())
    assert all(t.device.type == "cpu" and not t.requires_grad for t in state.values())
    fresh = mlp(seed=123)
    fresh.load_state_dict(state)  # strict
    x = torch.randn(8, 20)
    assert torch.equal(fresh(x), net(x))
    state["0.weight"].zero_()  # a snapshot: clones, not views
    assert net[0].weight_orig.abs().sum() > 0


def test_unpruned_copy_plain_and_with_state_dict():
    dense = mlp()
    dense_state = effective_state_dict(dense)
    net = prune_module(mlp(), 0.5)
    forward_backward(net)
    plain = unpruned_copy(net)
    assert not is_pruned(plain) and is_pruned(net)
    x = torch.randn(8, 20)
    assert torch.equal(plain(x), net(x))
    reference = unpruned_copy(net, dense_state)
    assert torch.equal(reference(x), dense(x))
    assert is_pruned(net) and sparsity(net) == pytest.approx(0.5, abs=1e-3)


# ----------------------------------------------------------------------------- compact
def assert_same_outputs(net, small, x):
    assert n_params(small) < n_params(unpruned_copy(net))
    assert not is_pruned(small)
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("make", [lambda: mlp((20, 64, 64, 2)), LayersMLP])
def test_compact_mlp_same_outputs_fewer_parameters(make):
    net = make()
    prune_module(net, 0.5, "structured_l1")
    before = copy_module(net)
    small = compact(net)
    n_in = prunable_tensors(net)[0][1].in_features
    x = torch.randn(32, n_in)
    assert_same_outputs(net, small, x)
    linears = [m for m in small.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears[:-1]] == [
        m.out_features // 2 for m in net.modules() if isinstance(m, nn.Linear)
    ][:-1]
    assert is_pruned(net) and torch.equal(net(x), before(x))  # input untouched


@pytest.mark.parametrize("cls", [CNN, UntraceableCNN])
def test_compact_cnn_same_outputs_fewer_parameters(cls):
    net = warm_batchnorm(cls(), (1, 16, 16))
    prune_module(net, 0.5, "structured_l2")
    small = compact(net)
    x = torch.randn(8, 1, 16, 16)
    assert_same_outputs(net, small, x)
    conv1, bn1, conv2 = small.features[0], small.features[1], small.features[4]
    assert (conv1.out_channels, bn1.num_features, conv2.in_channels) == (4, 4, 4)
    assert small.features[5].num_features == 8
    assert small.classifier[1].in_features == 8 * 4 * 4  # a removed channel: its 4x4 block
    small.train(), net.train()  # dead units: also equal with batch statistics
    with torch.no_grad():
        torch.testing.assert_close(small(x), net(x), atol=1e-5, rtol=0)


@pytest.mark.parametrize("act", [nn.ReLU, nn.Sigmoid])
def test_compact_folds_live_biases_of_zero_rows(act):
    # torch's own ln_structured does not mask the bias: the zeroed units output act(bias)
    net = mlp((10, 16, 12, 3), act=act)
    for i in (0, 2):
        with torch.no_grad():
            net[i].bias.uniform_(0.5, 1.0)
        prune.ln_structured(net[i], "weight", amount=0.5, n=2, dim=0)
    small = compact(net)
    assert_same_outputs(net, small, torch.randn(16, 10))
    assert small[0].out_features == 8 and small[2].in_features == 8


def test_compact_keeps_constant_channels_before_zero_padded_conv():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 2),
    )  # fmt: skip
    for i in (0, 2):
        with torch.no_grad():
            net[i].bias.fill_(0.3)
        dead_first = torch.ones_like(net[i].weight)
        dead_first[0] = 0
        prune.custom_from_mask(net[i], "weight", dead_first)
    small = compact(net, example_inputs=torch.randn(4, 1, 6, 6))
    # conv 0's dead filter outputs relu(0.3) into a zero-padded conv: kept (not foldable);
    # conv 2's feeds an unpadded conv: folded into its bias and removed
    assert (small[0].out_channels, small[2].out_channels, small[4].in_channels) == (4, 3, 3)
    assert_same_outputs(net, small, torch.randn(4, 1, 6, 6))


def zero_fraction(net: nn.Module) -> float:
    """Zeros over all Linear / Conv weights, counted directly on the module."""
    weights = [m.weight for m in net.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@pytest.mark.parametrize("make", [lambda: mlp((20, 64, 64, 2)), CNN], ids=["mlp", "cnn"])
def test_sparsity_of_a_compact_module_counts_its_own_weights(make):
    # structured pruning leaves zero rows in the masked net; compact removes them, so the
    # compact module holds no zero at all and its sparsity is 0.0, not the masked net's
    net = prune_module(make(), 0.5, "structured_l2")
    masked = sparsity(net)
    assert masked == pytest.approx(zero_fraction(net)) and masked > 0.25
    small = compact(net)
    assert zero_fraction(small) == 0.0
    assert sparsity(small) == 0.0
    assert sparsity(net) == masked  # the pruned module is untouched


def test_sparsity_of_a_compact_module_counts_the_zeros_it_kept():
    # a dead filter feeding a zero-padded conv with a non-zero constant is kept: its zeros
    # are still there and sparsity counts them over the compact module's weights
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with torch.no_grad():
        net[0].bias.fill_(0.3)
    kill_units(net[0], [0])
    net[0].bias_mask.fill_(1.0)  # the weights are zero, the bias is alive
    small = compact(net, example_inputs=torch.randn(4, 1, 6, 6))
    assert small[0].out_channels == 4  # kept
    assert zero_fraction(small) == pytest.approx(9 / (36 + 144 + 288), rel=1e-12)
    assert sparsity(small) == zero_fraction(small)


def kill_units(layer: nn.Module, units) -> None:
    """Mask whole output units (weight rows and bias) of ``layer``, as structured pruning does."""
    alive = torch.ones(layer.weight.shape[0], dtype=torch.bool)
    alive[list(units)] = False
    shape = (-1,) + (1,) * (layer.weight.dim() - 1)
    prune.custom_from_mask(layer, "weight", alive.view(shape).expand_as(layer.weight).float())
    if layer.bias is not None:
        prune.custom_from_mask(layer, "bias", alive.float())


def test_compact_residual_removes_channels_dead_on_both_sides_of_the_addition():
    torch.manual_seed(0)
    net = Residual()
    kill_units(net.fc1, [1, 3, 5])
    kill_units(net.fc2, [1, 3, 6])  # unit 6 is alive in fc1: the sum is not zero there
    small = compact(net)
    assert_same_outputs(net, small, torch.randn(16, 8))
    assert (small.fc1.out_features, small.fc2.in_features, small.fc2.out_features) == (6, 6, 6)
    assert small.out.in_features == 6


def test_compact_needs_example_inputs_when_it_cannot_infer_them():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    kill_units(net[0], [0, 2])
    with pytest.raises(ValueError, match="pass example_inputs"):
        compact(net)
    small = compact(net, example_inputs=torch.randn(2, 1, 6, 6))
    assert (small[0].out_channels, small[3].in_features) == (2, 2 * 4 * 4)
    assert_same_outputs(net, small, torch.randn(3, 1, 6, 6))


def test_compact_refuses_layers_it_cannot_shrink_and_names_them():
    grouped = nn.Sequential(
        nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)
    )
    grouped.input_shape = (4, 3, 3)
    kill_units(grouped[0], [1])
    with pytest.raises(NotImplementedError, match=r"layer '1' \(Conv2d, groups=2\)"):
        compact(grouped)
    layernorm = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    kill_units(layernorm[0], [1])
    with pytest.raises(NotImplementedError, match=r"layer '1' \(LayerNorm\)"):
        compact(layernorm)
    # nothing dead: nothing to refuse, a plain copy comes back
    assert not is_pruned(compact(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))))


# ----------------------------------------------------------------------------- caller's state
def _mid_training_module(pruned: bool) -> nn.Sequential:
    """Train mode with one submodule frozen in eval mode, and gradients present (some None)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 2)
    )
    if pruned:
        prune_module(net, 0.25, "structured_l2")
    nn.functional.cross_entropy(net(torch.randn(16, 6)), torch.randint(0, 2, (16,))).backward()
    net[4].bias.grad = None
    net.train()
    net[3].eval()
    return net


def _modes_and_grads(net: nn.Module):
    """Train flag per submodule; .grad per parameter *object* (pruning renames parameters)."""
    grads = {id(p): None if p.grad is None else p.grad.clone() for p in net.parameters()}
    return [m.training for m in net.modules()], grads


ENTRY_POINTS = {
    **{
        f"prune_module[{m}]": (
            lambda net, m=m: prune_module(net, 0.5, m, random_state=0, **data_for(m, 6))
        )
        for m in PRUNING_METHODS
    },
    "make_permanent": make_permanent,
    "detach_pruned_weights": detach_pruned_weights,
    "copy_module": copy_module,
    "effective_state_dict": effective_state_dict,
    "unpruned_copy": unpruned_copy,
    "compact": compact,
    "sparsity": sparsity,
    "layer_sparsity": layer_sparsity,
    "prunable_tensors": prunable_tensors,
    "is_pruned": is_pruned,
}


@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_entry_points_keep_modes_and_grads(name, pruned):
    net = _mid_training_module(pruned)
    modes, grads = _modes_and_grads(net)
    assert modes.count(False) == 1
    assert sum(g is None for g in grads.values()) == 1

    ENTRY_POINTS[name](net)

    assert [m.training for m in net.modules()] == modes
    after = {id(p): p.grad for p in net.parameters()}
    assert after.keys() == grads.keys()  # the same parameter objects (maybe renamed)
    for key, expected in grads.items():
        if expected is None:
            assert after[key] is None
        else:
            torch.testing.assert_close(after[key], expected, rtol=0, atol=0)
