"""Epoch time of PrunableNetClassifier relative to a bare torch loop, at batch 64, 256, 1024.

Adult training data (32,561 x 105), ``MLP(64, 64)``, plain SGD (lr 0.05), cross-entropy, one
torch thread. "Bare torch loop" is randperm, slice, forward, backward, step over tensors built
once. The net runs skorch's loop with ``train_split=None`` (no validation pass, as the bare
loop has none) and ``verbose=0``; its epoch time is skorch's ``dur``. The two alternate
``--repeats`` times at each batch size so machine load hits both alike; the ratio is that of
the median epoch times, all batch sizes printed side by side in one run. Target (issue 9):
<= 1.25.

    python benchmarks/bench_epoch.py [--epochs 3] [--repeats 3] [--profile 256]

``--profile B`` also prints cProfile's top entries (by total time) of one fit at batch B.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch
from torch import nn

from fairprune_sk import PrunableNetClassifier
from fairprune_sk.audit import load_adult_split
from fairprune_sk.models import MLP

BATCHES = (64, 256, 1024)
TARGET = 1.25


def make_net(batch_size: int, epochs: int) -> PrunableNetClassifier:
    return PrunableNetClassifier(
        MLP, module__hidden_units=(64, 64), criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.SGD, lr=0.05, max_epochs=epochs, batch_size=batch_size,
        train_split=None, verbose=0, random_state=0,
    )


def bare_epochs(X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> list[float]:
    torch.manual_seed(0)
    module = MLP(X.shape[1], 2, hidden_units=(64, 64))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    x_all, y_all = torch.from_numpy(X), torch.from_numpy(y)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        module.train()
        for idx in torch.randperm(len(x_all)).split(batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(x_all[idx]), y_all[idx]).backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", type=int, default=None, metavar="BATCH")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_adult_split(["race"])
    X = np.ascontiguousarray(data.X_train, dtype=np.float32)
    y = np.unique(np.asarray(data.y_train), return_inverse=True)[1].astype(np.int64)
    print(f"Adult {X.shape[0]} x {X.shape[1]}, MLP(64, 64), SGD, 1 torch thread, "
          f"{args.epochs} epochs x {args.repeats} alternating repeats per batch size")
    net_times = {b: [] for b in BATCHES}
    bare_times = {b: [] for b in BATCHES}
    for _ in range(args.repeats):
        for b in BATCHES:
            net = make_net(b, args.epochs).fit(X, y)
            net_times[b] += list(net.history[:, "dur"])
            bare_times[b] += bare_epochs(X, y, b, args.epochs)
    print(f"\n{'batch':>6}{'net epoch ms':>14}{'bare epoch ms':>15}{'ratio':>8}"
          f"  target <= {TARGET}")
    for b in BATCHES:
        net_ms = 1000 * statistics.median(net_times[b])
        bare_ms = 1000 * statistics.median(bare_times[b])
        print(f"{b:>6}{net_ms:>14.1f}{bare_ms:>15.1f}{net_ms / bare_ms:>8.2f}")

    if args.profile:
        profiler = cProfile.Profile()
        net = make_net(args.profile, args.epochs)
        profiler.enable()
        net.fit(X, y)
        profiler.disable()
        print(f"\ncProfile of one fit at batch {args.profile} ({args.epochs} epochs), "
              "top 15 by total time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
