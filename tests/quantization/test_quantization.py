"""fairprune_sk.quantization on bare torch modules: the k-bit grid, quantization-aware training,
composition with torch prune, the pruning helpers on a quantized module, and the int8 export."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from fairprune_sk import pruning
from fairprune_sk.quantization import (
    QUANTIZATION_BITS,
    dequantize,
    export_int8,
    fake_quantize,
    is_quantized,
    quantization_error,
    quantize_module,
    quantized_bits,
)


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(),
                         nn.Linear(24, 3))


def _distinct_per_row(weight: torch.Tensor) -> int:
    return max(len(torch.unique(row)) for row in weight.detach().reshape(weight.shape[0], -1))


def _train(module: nn.Module, steps: int = 30) -> None:
    torch.manual_seed(1)
    X, y = torch.randn(64, 12), torch.randint(0, 3, (64,))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(X), y).backward()
        optimizer.step()


def test_fake_quantize_is_the_symmetric_grid_of_each_row_by_brute_force():
    torch.manual_seed(0)
    weight = torch.randn(5, 7)
    weight[2] = 0.0  # an all-zero row stays zero
    for bits in QUANTIZATION_BITS:
        levels = 2 ** (bits - 1) - 1
        got = fake_quantize(weight, bits)
        for i, row in enumerate(weight):
            scale = row.abs().max() / levels if row.abs().max() > 0 else 1.0
            # the nearest level, found by scanning every level
            grid = torch.arange(-levels, levels + 1) * scale
            nearest = grid[(row[:, None] - grid[None, :]).abs().argmin(dim=1)]
            torch.testing.assert_close(got[i], nearest, atol=1e-6, rtol=0)
        assert _distinct_per_row(got) <= 2**bits - 1
        assert torch.equal(got[2], torch.zeros(7))
        assert torch.equal(got.abs().amax(dim=1), weight.abs().amax(dim=1))  # max exact


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_grid_holds_before_and_after_quantization_aware_training(bits):
    module = quantize_module(_mlp(), bits)
    before = {name: sub.weight.detach().clone() for name, sub in module.named_children()
              if isinstance(sub, nn.Linear)}
    for weight in before.values():
        assert _distinct_per_row(weight) <= 2**bits
    _train(module)
    for name, sub in module.named_children():
        if isinstance(sub, nn.Linear):
            weight = pruning.effective_state_dict(module)[f"{name}.weight"]
            assert _distinct_per_row(weight) <= 2**bits
            assert not torch.equal(weight, before[name])  # the straight-through step trained it
            # the forward pass uses exactly the grid of the float weights it trains
            torch.testing.assert_close(weight, fake_quantize(sub.weight_orig, bits))


def test_straight_through_gradient_is_the_float_gradient_at_the_grid_values():
    module = quantize_module(_mlp(), 3)
    X, y = torch.randn(16, 12), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(module(X), y).backward()
    plain = pruning.unpruned_copy(module)  # plain weights holding the grid values
    nn.functional.cross_entropy(plain(X), y).backward()
    torch.testing.assert_close(module[0].weight_orig.grad, plain[0].weight.grad)


def test_prune_then_quantize_keeps_every_pruned_weight_at_zero():
    module = pruning.prune_module(_mlp(), 0.7)
    masks = {name: sub.weight_mask.clone() for name, sub in module.named_children()
             if isinstance(sub, nn.Linear)}
    before = pruning.sparsity(module)
    quantize_module(module, 2)
    _train(module)
    assert pruning.sparsity(module) >= before
    state = pruning.effective_state_dict(module)
    for name, mask in masks.items():
        assert torch.all(state[f"{name}.weight"][mask == 0] == 0)
    assert sorted(state) == sorted(pruning.effective_state_dict(_mlp()))  # no grid buffers


def test_pruning_and_compacting_a_quantized_module_are_refused():
    module = quantize_module(_mlp(), 4)
    with pytest.raises(ValueError, match="prune first, then quantize"):
        pruning.prune_module(module, 0.5)
    with pytest.raises(ValueError, match="compact first, then quantize"):
        pruning.compact(module)


def test_make_permanent_keeps_the_grid_values_and_dequantize_the_float_ones():
    module = quantize_module(pruning.prune_module(_mlp(), 0.5), 3)
    _train(module, steps=5)
    X = torch.randn(8, 12)
    grid_out = module(X)
    plain = pruning.unpruned_copy(module)
    assert not pruning.is_pruned(plain) and not is_quantized(plain)
    torch.testing.assert_close(plain(X), grid_out)
    floats = pruning.effective_state_dict(dequantize(pruning.copy_module(module)))
    for name in ("0", "2", "4"):
        sub = module.get_submodule(name)
        torch.testing.assert_close(floats[f"{name}.weight"], sub.weight_orig * sub.weight_mask)


def test_keep_float_activations_and_requantizing():
    module = quantize_module(_mlp(), 4, activations=8, keep_float=["last"])
    assert quantized_bits(module) == {"0": 4, "2": 4}
    assert quantized_bits(module, inputs=True) == {"0": 8, "2": 8}
    X = torch.randn(6, 12)
    # the input grid is per sample: a row's output does not depend on its batch
    torch.testing.assert_close(module(X)[:2], module(X[:2]))
    assert not torch.allclose(module(X), quantize_module(_mlp(), 4, keep_float=["last"])(X))
    quantize_module(module, 2)
    assert quantized_bits(module) == {"0": 2, "2": 2, "4": 2}
    assert quantized_bits(module, inputs=True) == {"0": 0, "2": 0, "4": 0}


def test_quantization_error_is_the_distance_to_the_float_weights_and_shrinks_with_bits():
    errors = []
    for bits in (2, 4, 8):
        module = quantize_module(_mlp(), bits)
        floats = [sub.weight_orig.detach() for sub in module if isinstance(sub, nn.Linear)]
        by_hand = sum(float(((fake_quantize(w, bits) - w) ** 2).sum()) for w in floats) ** 0.5
        assert quantization_error(module) == pytest.approx(by_hand)
        errors.append(by_hand)
    assert errors[0] > errors[1] > errors[2] > 0
    assert quantization_error(_mlp()) == 0.0


def test_copies_pickles_and_state_dicts_keep_the_grid():
    module = quantize_module(pruning.prune_module(_mlp(), 0.5), 3)
    X = torch.randn(4, 12)
    module(X)  # non-leaf weights after a forward pass
    for other in (pruning.copy_module(module), pickle.loads(pickle.dumps(
            pruning.detach_pruned_weights(module)))):
        torch.testing.assert_close(other(X), module(X))
        assert quantized_bits(other) == {"0": 3, "2": 3, "4": 3}
        _train(other, steps=3)
        assert not torch.allclose(other(X), module(X))  # the copy trains alone
    assert "0.weight_bits" in module.state_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bits": 1}, "'bits' parameter of quantize_module must be an int in the range [2, 8]"),
        ({"bits": 9}, "'bits' parameter of quantize_module must be an int in the range [2, 8]"),
        ({"bits": 4.0}, "'bits' parameter of quantize_module"),
        ({"bits": 4, "activations": 16}, "'activations' parameter of quantize_module"),
        ({"bits": 4, "keep_float": ["nope"]}, "'keep_float' parameter of quantize_module"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        quantize_module(_mlp(), **kwargs)
    with pytest.raises(ValueError, match="'bits' parameter of fake_quantize"):
        fake_quantize(torch.ones(2, 2), 10)


@pytest.mark.parametrize("bits", [8, 3])
def test_int8_export_matches_the_simulated_grid(bits):
    module = quantize_module(pruning.prune_module(_mlp(), 0.5), bits)
    _train(module, steps=10)
    fast = export_int8(module)
    assert all(not isinstance(sub, nn.Linear) or type(sub) is not nn.Linear
               for sub in fast.modules())
    # the exported int8 weights are the k-bit grid values themselves
    state = pruning.effective_state_dict(module)
    for name in ("0", "2", "4"):
        exported = fast.get_submodule(name).weight().dequantize()
        torch.testing.assert_close(exported, state[f"{name}.weight"], atol=1e-6, rtol=1e-5)
    torch.manual_seed(3)
    X = torch.randn(256, 12)
    with torch.no_grad():
        simulated, int8 = module(X), fast(X)
    # only the 8-bit dynamic activations differ
    assert (simulated - int8).abs().max() < 0.05 * simulated.abs().max()
    assert (simulated.argmax(1) == int8.argmax(1)).float().mean() > 0.95
    assert is_quantized(module) and module.training  # the source is left as it was
