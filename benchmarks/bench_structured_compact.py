"""CPU inference time: dense vs structurally pruned (masked) vs compacted networks.

Masked pruning keeps the dense shapes, so it cannot be faster than the dense net; structured
pruning followed by :func:`fairprune_sk.pruning.compact` rebuilds smaller layers. This script
times the three variants of an MLP, a small CNN and the project's residual ResNet18 (on
digits-sized 1x8x8 images, batch 256; Torch-Pruning removes the coupled channels of its
shortcuts) in one run and prints the ratios. Target: ResNet18 at rate 0.5, the same
predictions (max |diff| <= 1e-4) and dense/compact >= 1.5x.

Run::

    python benchmarks/bench_structured_compact.py            # defaults: 2 threads, rate 0.5
    python benchmarks/bench_structured_compact.py --threads 1 --repeats 30
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from fairprune_sk.models import ResNet18
from fairprune_sk.pruning import compact, copy_module, prune_module, validate_rate


def make_mlp(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(100, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, 2),
    )  # fmt: skip


def make_cnn() -> nn.Module:
    def block(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                nn.MaxPool2d(2)]  # fmt: skip

    return nn.Sequential(
        *block(1, 32), *block(32, 64), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


def median_ms(nets: list[nn.Module], x: torch.Tensor, repeats: int, warmup: int) -> list[float]:
    """Median forward time of each net; the nets take turns, so load changes hit all alike."""
    times: list[list[float]] = [[] for _ in nets]
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for net, record in zip(nets, times, strict=True):
                start = time.perf_counter()
                net(x)
                if i >= warmup:
                    record.append(time.perf_counter() - start)
    return [1000 * statistics.median(record) for record in times]


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def bench(name: str, dense: nn.Module, x: torch.Tensor, args) -> dict:
    dense.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(2):
            dense(x[:64])
    dense.eval()
    # masked: the dense shapes with zeroed rows / filters; compact: the smaller layers
    masked = prune_module(copy_module(dense), args.rate, "structured_l2", example_inputs=x[:2])
    small = compact(masked, example_inputs=x[:2]).eval()  # traced by Torch-Pruning on x[:2]
    with torch.inference_mode():
        max_diff = (small(x) - masked(x)).abs().max().item()
    t_dense, t_masked, t_small = median_ms([dense, masked, small], x, args.repeats, args.warmup)
    return {
        "model": name,
        "batch": x.shape[0],
        "params dense": n_params(dense),
        "params compact": n_params(small),
        "dense ms": t_dense,
        "masked ms": t_masked,
        "compact ms": t_small,
        "dense/masked": t_dense / t_masked,
        "dense/compact": t_dense / t_small,
        "max |diff|": max_diff,
    }


def print_table(rows: list[dict]) -> None:
    formats = {
        "model": "{}",
        "batch": "{}",
        "params dense": "{:,}",
        "params compact": "{:,}",
        "dense ms": "{:.2f}",
        "masked ms": "{:.2f}",
        "compact ms": "{:.2f}",
        "dense/masked": "{:.2f}x",
        "dense/compact": "{:.2f}x",
        "max |diff|": "{:.1e}",
    }
    cells = [[fmt.format(row[key]) for key, fmt in formats.items()] for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(formats)]
    print("  ".join(h.rjust(w) for h, w in zip(formats, widths, strict=True)))
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths, strict=True)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (2)")
    parser.add_argument("--rate", type=float, default=0.5, help="structured pruning rate (0.5)")
    parser.add_argument("--repeats", type=int, default=15, help="timed forward passes (15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed forward passes (3)")
    parser.add_argument("--width", type=int, default=1024, help="MLP hidden width (1024)")
    parser.add_argument("--mlp-batch", type=int, default=4096, help="MLP batch size (4096)")
    parser.add_argument("--cnn-batch", type=int, default=512, help="CNN batch size (512)")
    parser.add_argument("--resnet-width", type=int, default=64, help="ResNet18 width (64)")
    parser.add_argument("--resnet-batch", type=int, default=256, help="ResNet18 batch (256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    validate_rate(args.rate, "--rate")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    rows = [
        bench(
            f"MLP 100-{args.width}x3-2",
            make_mlp(args.width),
            torch.randn(args.mlp_batch, 100),
            args,
        ),
        bench("CNN 28x28 (32, 64)", make_cnn(), torch.randn(args.cnn_batch, 1, 28, 28), args),
        bench(
            f"ResNet18 1x8x8 w{args.resnet_width}",
            ResNet18(input_shape=(1, 8, 8), n_classes=10, width=args.resnet_width),
            torch.randn(args.resnet_batch, 1, 8, 8),
            args,
        ),
    ]
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), structured_l2 at rate "
        f"{args.rate}, median of {args.repeats} interleaved forward passes (inference_mode, eval)"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
