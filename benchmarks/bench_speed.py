"""The speed targets of the core, measured side by side in one run (one torch thread).

1. ``PrunableNetClassifier`` epoch / a bare torch loop (randperm, slice, forward, backward, step
   over tensors built once), Adult (32,561 x 105), MLP (64, 64), SGD, batch 64, 256 and 1024.
   Target: <= 1.25 at 256 and 1024 (64 reported).
2. Constrained fine-tuning epoch / plain fine-tuning epoch of ``FairConstrainedNet``
   (``constraint_phase="after"``; CEAG ``accuracy_gap`` and the paper's ``group_loss``, each
   at its defaults, against ``constraint_phase="none"``), after pruning 90 %, batch 128 on
   28 x 28 Fashion-MNIST images (classes as groups), MLP (256, 256) and SmallCNN. Target:
   <= 1.10. The Adult MLP (64, 64) figure is printed without a target.
3. One iteration of the eigen-solver (a Hessian-vector product, in
   :func:`fairprune_sk.diagnostics.top_hessian_eigenvalue`) / a gradient pass (one backward of
   the mean loss), MLP (256, 256) on 1,024 Fashion-MNIST images. Target: <= 2.5.
   ``benchmarks/bench_hessian.py`` compares the Lanczos solver with scipy's ``eigsh``.

The nets of a ratio are timed alternately ``--repeats`` times so machine load hits both alike;
every ratio is that of the medians of skorch's per-epoch ``dur`` (or of the timed calls); the
first fine-tuning epoch after pruning of every run is left out (it warms up the masked layers,
for every method alike).

    python benchmarks/bench_speed.py [--repeats 3] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from fairprune_sk import FairConstrainedNet, PrunableNetClassifier
from fairprune_sk.datasets import load_adult, load_fashion_mnist
from fairprune_sk.diagnostics import top_hessian_eigenvalue
from fairprune_sk.models import MLP, SmallCNN


def adult_arrays() -> tuple[np.ndarray, np.ndarray]:
    data = load_adult(sensitive="race")
    X = data.preprocessor.fit_transform(data.X_train)
    X = np.ascontiguousarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float32)
    return X, np.asarray(data.y_train, dtype=np.int64)


def fashion_arrays(n: int) -> tuple[np.ndarray, np.ndarray]:
    data = load_fashion_mnist(n_train=n, random_state=0)
    X = np.asarray(data.X_train, dtype=np.float32).reshape(-1, 1, 28, 28)
    return X, np.asarray(data.y_train, dtype=np.int64)


def bare_epochs(X: np.ndarray, y: np.ndarray, batch_size: int, epochs: int) -> list[float]:
    torch.manual_seed(0)
    module = MLP(X.shape[1], 2, hidden_units=(64, 64))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05)
    x_all, y_all = torch.from_numpy(X), torch.from_numpy(y)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        module.train()
        for index in torch.randperm(len(x_all)).split(batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(x_all[index]), y_all[index]).backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def net_vs_bare(X: np.ndarray, y: np.ndarray, repeats: int, epochs: int) -> None:
    print("1. PrunableNetClassifier epoch / bare torch loop (Adult, MLP (64, 64), SGD)")
    print(f"{'batch':>8}{'net ms':>10}{'bare ms':>10}{'ratio':>8}  target")
    for batch_size in (64, 256, 1024):
        net_times, bare_times = [], []
        for _ in range(repeats):
            net = PrunableNetClassifier(
                MLP, module__hidden_units=(64, 64), optimizer=torch.optim.SGD, lr=0.05,
                max_epochs=epochs, batch_size=batch_size, random_state=0,
            ).fit(X, y)
            net_times += list(net.history[:, "dur"])
            bare_times += bare_epochs(X, y, batch_size, epochs)
        net_ms, bare_ms = (1000 * statistics.median(t) for t in (net_times, bare_times))
        target = "-" if batch_size == 64 else "<= 1.25"
        print(f"{batch_size:>8}{net_ms:>10.1f}{bare_ms:>10.1f}{net_ms / bare_ms:>8.2f}  {target}")


def fine_tuning_epochs(module: type, params: dict, X: np.ndarray, y: np.ndarray,
                       group: np.ndarray, epochs: int, **method: object) -> list[float]:
    net = FairConstrainedNet(module, **params, **method, pruning_rate=0.9,
                             fine_tune_epochs=epochs, random_state=0)
    net.fit(X, y, sensitive_features=group)
    durations = [row["dur"] for row in net.history if row["phase"] == "fine_tune"]
    return durations[1:]  # the first epoch after pruning warms up the masked layers


def constrained_vs_plain(cases: list, repeats: int, epochs: int) -> None:
    print("\n2. Constrained fine-tuning epoch / plain fine-tuning epoch (pruned 90 %)")
    print(f"{'net':>24}{'plain ms':>10}{'ceag':>8}{'group_loss':>12}  target")
    methods = {
        "ceag": dict(constraint_phase="after", constraint_target="accuracy_gap"),
        "group_loss": dict(constraint_phase="after", constraint_target="group_loss"),
    }
    for label, module, params, X, y, target in cases:
        times = {"plain": [], **{name: [] for name in methods}}
        for _ in range(repeats):
            times["plain"] += fine_tuning_epochs(module, params, X, y, y, epochs,
                                                 constraint_phase="none")
            for name, method in methods.items():
                times[name] += fine_tuning_epochs(module, params, X, y, y, epochs, **method)
        plain = statistics.median(times["plain"])
        ratios = {name: statistics.median(times[name]) / plain for name in methods}
        print(f"{label:>24}{1000 * plain:>10.1f}{ratios['ceag']:>8.2f}"
              f"{ratios['group_loss']:>12.2f}  {target}")


def hvp_vs_gradient(X: np.ndarray, y: np.ndarray, repeats: int) -> None:
    torch.manual_seed(0)
    module = MLP(X[0].size, 10, hidden_units=(256, 256))
    flat = X.reshape(len(X), -1)
    inputs, target = torch.from_numpy(flat), torch.from_numpy(y)
    gradient_times, short_times, long_times = [], [], []
    for _ in range(repeats):
        for _ in range(5):
            start = time.perf_counter()
            module.zero_grad()
            nn.functional.cross_entropy(module(inputs), target).backward()
            gradient_times.append(time.perf_counter() - start)
        for iterations, times in ((5, short_times), (25, long_times)):
            start = time.perf_counter()
            top_hessian_eigenvalue(module, flat, y, max_iter=iterations, tol=0.0,
                                   random_state=0, batch_size=len(y))
            times.append(time.perf_counter() - start)
    gradient = statistics.median(gradient_times)
    # the cost of one more Lanczos iteration: the difference of 25 and 5 iterations, over 20
    iteration = (statistics.median(long_times) - statistics.median(short_times)) / 20
    print("\n3. Lanczos iteration (one Hessian-vector product) / gradient pass")
    print("   (MLP (256, 256), 1,024 Fashion-MNIST images, top_hessian_eigenvalue)")
    print(f"{'gradient ms':>14}{'iteration ms':>14}{'ratio':>8}  target")
    print(f"{1000 * gradient:>14.1f}{1000 * iteration:>14.1f}{iteration / gradient:>8.2f}  <= 2.5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-images", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(1)

    X_adult, y_adult = adult_arrays()
    net_vs_bare(X_adult, y_adult, args.repeats, args.epochs)

    X_img, y_img = fashion_arrays(args.n_images)
    common = dict(optimizer=torch.optim.SGD, lr=0.01, batch_size=128, max_epochs=1)
    cases = [
        ("MLP (256, 256), 28x28", MLP, dict(common, module__hidden_units=(256, 256)),
         X_img.reshape(len(X_img), -1), y_img, "<= 1.10"),
        ("SmallCNN, 28x28", SmallCNN, common, X_img, y_img, "<= 1.10"),
        ("MLP (64, 64), Adult", MLP, dict(common, module__hidden_units=(64, 64)),
         X_adult, y_adult, "-"),
    ]
    constrained_vs_plain(cases, args.repeats, args.epochs)
    hvp_vs_gradient(X_img[:1024], y_img[:1024], args.repeats)


if __name__ == "__main__":
    main()
