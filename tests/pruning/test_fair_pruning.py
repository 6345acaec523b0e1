"""Tests of the group-balanced Taylor criterion: saliency, masks, Torch-Pruning Importance."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch_pruning as tp
from torch import nn

from fairprune_sk.pruning import (
    DATA_DRIVEN_METHODS,
    PRUNING_METHODS,
    GroupBalancedTaylorImportance,
    compact,
    fair_taylor_prune,
    group_taylor_saliency,
    layer_sparsity,
    prunable_tensors,
    prune_module,
    sparsity,
)

F = nn.functional


# ----------------------------------------------------------------------------- fixtures
def tiny_net(sizes=(4, 6, 5, 3), seed=0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).to(dtype)


def tiny_data(n=60, n_in=4, n_classes=3, n_groups=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, n_in, generator=g, dtype=dtype)
    y = torch.randint(0, n_classes, (n,), generator=g)
    groups = torch.randint(0, n_groups, (n,), generator=g)
    return X, y, groups


class CNN(nn.Module):
    """Conv-BN-ReLU-Pool, Conv-ReLU-Pool, Flatten, Linear."""

    def __init__(self, seed=0, dtype=torch.float32):
        super().__init__()
        torch.manual_seed(seed)
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(8 * 2 * 2, 3))
        self.to(dtype)

    def forward(self, x):
        return self.classifier(self.features(x))


def cnn_data(n=24, seed=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 8, 8, generator=g, dtype=dtype),
            torch.randint(0, 3, (n,), generator=g), torch.arange(n) % 2)


def group_loss(net, X, y, groups, a):
    rows = groups == a
    return F.cross_entropy(net(X[rows]), y[rows])


def weights(net):
    return {name: sub.weight for name, sub, _ in prunable_tensors(net)}


def masks(net):
    return {name: getattr(sub, "weight_mask", torch.ones_like(sub.weight)).clone()
            for name, sub, _ in prunable_tensors(net)}


# ----------------------------------------------------------------------------- saliency
def test_first_order_saliency_is_minus_group_gradient_times_weight():
    net = tiny_net()
    X, y, groups = tiny_data()
    saliency = group_taylor_saliency(net, X, y, groups, order=1)
    for a in range(3):
        grads = torch.autograd.grad(group_loss(net, X, y, groups, a), list(weights(net).values()))
        for (name, w), g in zip(weights(net).items(), grads, strict=True):
            torch.testing.assert_close(saliency[name][a], -g * w.detach(), rtol=1e-12, atol=1e-14)


def test_second_order_term_is_half_w2_times_mean_squared_per_sample_gradient():
    net = tiny_net()
    X, y, groups = tiny_data()
    first = group_taylor_saliency(net, X, y, groups, order=1)
    second = group_taylor_saliency(net, X, y, groups, order=2)
    w = weights(net)
    for a in range(3):
        rows = torch.nonzero(groups == a).flatten()
        squares = {name: torch.zeros_like(value) for name, value in w.items()}
        for i in rows.tolist():  # brute force: one sample at a time
            loss = F.cross_entropy(net(X[i : i + 1]), y[i : i + 1])
            for name, g in zip(w, torch.autograd.grad(loss, list(w.values())), strict=True):
                squares[name] += g * g
        for name, value in w.items():
            fisher = squares[name] / len(rows)
            torch.testing.assert_close(second[name][a] - first[name][a],
                                       0.5 * fisher * value.detach() ** 2,
                                       rtol=1e-10, atol=1e-14)


def test_first_order_saliency_is_the_slope_of_the_brute_force_removal():
    """Shrink one weight by a fraction t and recompute each group's loss: the change over t
    tends to -g w as t -> 0 (and removing it entirely moves the loss by about that much)."""
    net = tiny_net()
    X, y, groups = tiny_data()
    saliency = group_taylor_saliency(net, X, y, groups, order=1)
    t = 1e-6
    checked = 0
    for name, w in weights(net).items():
        for flat in range(0, w.numel(), 7):
            index = np.unravel_index(flat, tuple(w.shape))
            with torch.no_grad():
                before = [group_loss(net, X, y, groups, a) for a in range(3)]
                original = w[index].item()
                w[index] = original * (1 - t)
                after = [group_loss(net, X, y, groups, a) for a in range(3)]
                w[index] = original
            for a in range(3):
                slope = float(after[a] - before[a]) / t
                assert slope == pytest.approx(float(saliency[name][(a, *index)]), abs=1e-6)
                checked += 1
    assert checked > 20


def test_saliency_of_pruned_weights_is_zero_and_module_untouched():
    net = tiny_net()
    X, y, groups = tiny_data()
    prune_module(net, 0.5)
    before = copy.deepcopy(net.state_dict())
    saliency = group_taylor_saliency(net, X, y, groups, order=2)
    for name, sub, _ in prunable_tensors(net):
        assert bool((saliency[name][:, sub.weight_mask == 0] == 0).all())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])


def test_conv_saliency_fisher_matches_per_sample_brute_force():
    net = CNN(dtype=torch.float64).eval()
    X, y, groups = cnn_data(n=10, dtype=torch.float64)
    first = group_taylor_saliency(net, X, y, groups, order=1)
    second = group_taylor_saliency(net, X, y, groups, order=2)
    w = weights(net)
    for a in range(2):
        rows = torch.nonzero(groups == a).flatten().tolist()
        squares = {name: torch.zeros_like(value) for name, value in w.items()}
        gradient = {name: torch.zeros_like(value) for name, value in w.items()}
        for i in rows:
            loss = F.cross_entropy(net(X[i : i + 1]), y[i : i + 1])
            for name, g in zip(w, torch.autograd.grad(loss, list(w.values())), strict=True):
                squares[name] += g * g
                gradient[name] += g
        for name, value in w.items():
            torch.testing.assert_close(first[name][a], -gradient[name] / len(rows) * value,
                                       rtol=1e-9, atol=1e-12)
            torch.testing.assert_close(second[name][a] - first[name][a],
                                       0.5 * squares[name] / len(rows) * value**2,
                                       rtol=1e-9, atol=1e-12)


def test_empty_group_code_gives_zero_saliency():
    net = tiny_net()
    X, y, groups = tiny_data(n_groups=2)
    groups = torch.where(groups == 1, 3, groups)  # codes 0 and 3: 1 and 2 are empty
    saliency = group_taylor_saliency(net, X, y, groups)
    for value in saliency.values():
        assert value.shape[0] == 4
        assert bool((value[1:3] == 0).all()) and bool((value[3] != 0).any())


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("method", DATA_DRIVEN_METHODS)
@pytest.mark.parametrize("missing", [("X",), ("y",), ("groups",), ("X", "groups"),
                                     ("X", "y", "groups")])
def test_missing_data_is_named(method, missing):
    X, y, groups = tiny_data(dtype=torch.float32)
    given = {name: value for name, value in (("X", X), ("y", y), ("groups", groups))
             if name not in missing}
    message = re.escape(f"method={method!r} ranks the weights with data and needs X, y and "
                        f"groups; missing: {', '.join(missing)}.")
    with pytest.raises(ValueError, match=message):
        prune_module(tiny_net(dtype=torch.float32), 0.5, method, **given)


def test_data_driven_methods_are_pruning_methods():
    assert DATA_DRIVEN_METHODS == ("fair_taylor", "fair_taylor_structured")
    assert set(DATA_DRIVEN_METHODS) <= set(PRUNING_METHODS)


@pytest.mark.parametrize(("change", "message"), [
    ({"y": torch.rand(60)}, "y must hold integer class indices; got dtype torch.float32"),
    ({"groups": -torch.ones(60, dtype=torch.int64)}, "groups must hold group codes >= 0; got -1"),
    ({"groups": torch.zeros(59, dtype=torch.int64)},
     r"X, y and groups must have one entry per row; got lengths \{'X': 60, 'y': 60, "
     r"'groups': 59\}"),
    ({"y": torch.full((60,), 5)}, r"y holds class index 5 but the module returns 3 logits"),
    ({"groups": torch.zeros((60, 2), dtype=torch.int64)}, "groups must be 1-D"),
])
def test_invalid_data_is_named(change, message):
    X, y, groups = tiny_data(dtype=torch.float32)
    data = {"X": X, "y": y, "groups": groups, **change}
    with pytest.raises(ValueError, match=message):
        prune_module(tiny_net(dtype=torch.float32), 0.5, "fair_taylor", **data)


def test_invalid_options_are_named():
    X, y, groups = tiny_data()
    with pytest.raises(ValueError, match="The 'batch_size' parameter of prune_module must be"):
        prune_module(tiny_net(), 0.5, "fair_taylor", X=X, y=y, groups=groups, batch_size=0)
    with pytest.raises(ValueError, match="The 'order' parameter of fair_taylor_prune must be"):
        fair_taylor_prune(tiny_net(), 0.5, X, y, groups, order=3)
    with pytest.raises(ValueError, match="The 'step_fraction' parameter of fair_taylor_prune"):
        fair_taylor_prune(tiny_net(), 0.5, X, y, groups, step_fraction=0.0)
    with pytest.raises(ValueError, match="The 'order' parameter of GroupBalancedTaylorImportance"):
        GroupBalancedTaylorImportance(X, y, groups, order=0)


def test_accepts_numpy_and_pandas():
    X, y, groups = tiny_data(dtype=torch.float32)
    net = tiny_net(dtype=torch.float32)
    prune_module(net, 0.2, "fair_taylor", X=X.numpy(), y=pd.Series(y.numpy()),
                 groups=groups.numpy().astype(np.int32))
    assert sparsity(net) == pytest.approx(round(0.2 * 69) / 69)


# ----------------------------------------------------------------------------- masks
def worst_group_score(net, X, y, groups):
    return {name: s.max(0).values for name, s in group_taylor_saliency(net, X, y, groups,
                                                                        order=1).items()}


@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_one_step_removes_the_lowest_worst_group_scores_across_layers(rate):
    net = tiny_net()
    X, y, groups = tiny_data()
    score = worst_group_score(net, X, y, groups)
    fair_taylor_prune(net, rate, X, y, groups, step_fraction=1.0)
    flat = torch.cat([score[name].flatten() for name in score])
    kept = torch.cat([mask.flatten() for mask in masks(net).values()]).bool()
    assert int((~kept).sum()) == round(rate * flat.numel())
    assert flat[~kept].max() <= flat[kept].min()


@pytest.mark.parametrize("method", DATA_DRIVEN_METHODS)
@pytest.mark.parametrize("rate", [0.0, 0.5, 0.9])
def test_masks_reach_the_rate(method, rate):
    net = tiny_net((4, 16, 12, 3))
    X, y, groups = tiny_data()
    fair_taylor_prune(net, rate, X, y, groups, structured=method != "fair_taylor",
                      step_fraction=0.2)
    selected = ["0", "2", "4"] if method == "fair_taylor" else ["0", "2"]
    for name in selected:  # reparametrised even at rate 0, as every method does
        assert hasattr(dict(net.named_modules())[name], "weight_mask")
    if method == "fair_taylor":
        total = sum(mask.numel() for mask in masks(net).values())
        assert sparsity(net) == round(rate * total) / total
    else:
        for mask in list(masks(net).values())[:-1]:
            rows = mask.flatten(1).any(dim=1)
            assert int((~rows).sum()) == round(rate * len(rows))
            assert bool(((mask == 0) == (~rows)[:, None]).all())  # whole rows only
        assert bool(masks(net)["4"].all())  # the last layer (the classes) is never pruned


def test_pruning_is_cumulative_and_steps_only_grow_the_masks():
    net = tiny_net((4, 16, 12, 3))
    X, y, groups = tiny_data()
    fair_taylor_prune(net, 0.5, X, y, groups, step_fraction=0.2)
    first = masks(net)
    fair_taylor_prune(net, 0.8, X, y, groups, step_fraction=0.2)
    for name, mask in masks(net).items():
        assert not mask[first[name] == 0].any()
    with pytest.raises(ValueError, match="below the current sparsity"):
        fair_taylor_prune(net, 0.6, X, y, groups)


@pytest.mark.parametrize("method", DATA_DRIVEN_METHODS)
def test_keep_dense_is_respected(method):
    net = tiny_net((4, 16, 12, 3))
    X, y, groups = tiny_data()
    before = net[0].weight.detach().clone()
    prune_module(net, 0.3, method, X=X, y=y, groups=groups, keep_dense=["first"])
    assert not hasattr(net[0], "weight_mask")
    assert torch.equal(net[0].weight, before)
    assert layer_sparsity(net)["2"] > 0.25


def test_min_layer_density_keeps_each_layers_best_weights():
    net = tiny_net((4, 16, 12, 3))
    X, y, groups = tiny_data()
    fair_taylor_prune(net, 0.9, X, y, groups, min_layer_density=0.05, step_fraction=0.2)
    for name, mask in masks(net).items():
        assert int(mask.sum()) >= math.ceil(0.05 * mask.numel()), name
    assert sparsity(net) == round(0.9 * 292) / 292
    with pytest.raises(ValueError, match="highest reachable rate"):
        prune_module(tiny_net((4, 16, 12, 3)), 0.9, "fair_taylor", X=X, y=y, groups=groups,
                     min_layer_density=0.5)


def test_structured_conv_units_are_dead_and_compact_keeps_outputs():
    net = CNN()
    X, y, groups = cnn_data()
    fair_taylor_prune(net, 0.5, X, y, groups, structured=True, step_fraction=0.25)
    conv = net.features[0]
    alive = conv.weight_mask.flatten(1).any(dim=1)
    assert int((~alive).sum()) == 3
    assert bool((conv.bias_mask == alive).all())
    assert bool((net.features[1].weight_mask == alive).all())  # its BatchNorm channel
    net.eval()
    small = compact(net, example_inputs=X[:2])
    torch.testing.assert_close(small(X), net(X), rtol=1e-5, atol=1e-6)
    assert small.features[0].out_channels == 3 and small.features[4].out_channels == 4


def test_modes_and_grads_are_left_as_they_were():
    net = tiny_net(dtype=torch.float32)
    X, y, groups = tiny_data(dtype=torch.float32)
    F.cross_entropy(net(X), y).backward()
    grads = {name: p.grad.clone() for name, p in net.named_parameters()}
    net.train()
    net[1].eval()
    modes = [m.training for m in net.modules()]
    prune_module(net, 0.2, "fair_taylor", X=X, y=y, groups=groups)
    assert [m.training for m in net.modules()] == modes and modes.count(False) == 1
    for name, p in net.named_parameters():
        key = name.replace("_orig", "")
        torch.testing.assert_close(p.grad, grads[key], rtol=0, atol=0)


# ----------------------------------------------------------------------------- Importance
def brute_force_channel_scores(net, X, y, groups, layer, next_layer):
    """max over groups of (sum of -g w over the layer's row + the next layer's column)."""
    out = []
    for a in sorted(set(groups.tolist())):
        g_row, g_col = torch.autograd.grad(group_loss(net, X, y, groups, a),
                                           [layer.weight, next_layer.weight])
        row = (-g_row * layer.weight).flatten(1).sum(1)
        column = (-g_col * next_layer.weight).transpose(0, 1).flatten(1).sum(1)
        out.append((row + column).detach())
    return torch.stack(out).max(0).values.clamp(min=0)


def test_importance_is_one_score_per_channel_against_brute_force():
    net = tiny_net((4, 16, 12, 3))
    X, y, groups = tiny_data()
    importance = GroupBalancedTaylorImportance(X, y, groups, group_reduction="sum",
                                               normalizer=None)
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=X[:2])
    for layer, next_layer in ((net[0], net[2]), (net[2], net[4])):
        group = graph.get_pruning_group(layer, tp.prune_linear_out_channels,
                                        idxs=list(range(layer.out_features)))
        scores = importance(group)
        assert scores.shape == (layer.out_features,)
        torch.testing.assert_close(
            scores.to(torch.float64),
            brute_force_channel_scores(net, X, y, groups, layer, next_layer),
            rtol=1e-5, atol=1e-7)


def test_importance_in_meta_pruner_keeps_the_highest_scored_channels():
    net = tiny_net((4, 16, 12, 3), dtype=torch.float32)
    X, y, groups = tiny_data(dtype=torch.float32)
    importance = GroupBalancedTaylorImportance(X, y, groups)
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=X[:2])
    group = graph.get_pruning_group(net[0], tp.prune_linear_out_channels, idxs=list(range(16)))
    scores = importance(group)
    expected = net[0].weight.detach()[torch.sort(torch.topk(scores, 8).indices).values]
    pruner = tp.pruner.MetaPruner(net, X[:2], importance=importance, pruning_ratio=0.5,
                                  ignored_layers=[net[4]])
    pruner.step()
    assert (net[0].out_features, net[2].out_features, net[4].out_features) == (8, 6, 3)
    torch.testing.assert_close(net[0].weight.detach(), expected)
    assert net(X).shape == (60, 3)


def test_importance_recomputes_after_each_meta_pruner_step_on_a_cnn():
    net = CNN()
    X, y, groups = cnn_data()
    importance = GroupBalancedTaylorImportance(X, y, groups, order=2)
    pruner = tp.pruner.MetaPruner(net, X[:2], importance=importance, pruning_ratio=0.5,
                                  iterative_steps=2, ignored_layers=[net.classifier[1]])
    for _ in range(2):
        pruner.step()  # the second step scores the smaller, already pruned model
    assert (net.features[0].out_channels, net.features[4].out_channels) == (3, 4)
    assert net.features[1].num_features == 3
    assert net(X).shape == (24, 3)
    assert all(p.grad is None for p in net.parameters())
