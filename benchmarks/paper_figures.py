"""The paper's Figs. 2-4 (Tran et al., NeurIPS 2022) as scatter plots with Spearman's ρ.

For every seed a dense net θ* is trained (``FairConstrainedNet`` with
``constraint_phase="none"``, the settings of ``bench_mitigation.py``), a copy is pruned (global
magnitude, ``--rate``) and measured with :class:`~fairprune_sk.diagnostics.GroupDiagnostics`
on the training rows, and further copies are pruned and fine-tuned ``--fine-tune-epochs`` by
each method of ``bench_mitigation.METHODS`` (plain fine-tuning, Fair Aft = ``group_loss``
after, CEAG = ``accuracy_gap``, ``gap_and_loss``). The figures
(:func:`~fairprune_sk.diagnostics.plot_factor_scatter`, one point per group × seed, Spearman's
ρ over all points with a 95 % bootstrap interval that resamples groups):

- ``fig2_gradient_norm.png``: ``‖g_a‖`` at θ* against the group's size and against θ*'s
  accuracy on the group (Proposition 1: larger for small, badly fitted groups);
- ``fig3_hessian.png``: ``λ(H_a)`` at θ* against boundary closeness, mean ``p(1 − p)`` of θ*'s
  predicted-class probability (Theorem 2), and ``λ(H_a)`` against the excess risk ``R(a)``
  (eq. 2) of pruning without fine-tuning;
- ``fig4_mitigations.png``: one row per net (pruning alone, then each method), the group's
  test accuracy against ``‖g_a‖`` and against boundary closeness, both measured at that net's
  own parameters θ̂ (the factors a mitigation changes).

Fashion-MNIST's classes are the groups; its stratified subsample has equal class sizes, so
``--size-spread`` keeps, per seed, a fraction ``spread^(k / 9)`` of the training images of the
class ranked ``k`` in a random order (one class all of them, one a ``spread`` of them), which
gives Fig. 2 a range of group sizes that is not tied to one class. Tables keep their own
group sizes.

Writes the PNGs, ``factors.csv`` (one row per net × seed × group) and ``correlations.csv``
(ρ and interval of every panel) to ``--out`` and prints the correlations.

Run (one torch thread)::

    python benchmarks/paper_figures.py --dataset fashion_mnist --out results/paper_figures_fm
    python benchmarks/paper_figures.py --csv adult.csv --target income --sensitive race sex \\
        --out results/paper_figures_adult
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from bench_mitigation import DEFAULT_HIDDEN, DEFAULT_TRAINING, METHODS

from fairprune_sk import ExcessRiskFrame
from fairprune_sk.constrained import FairConstrainedNet
from fairprune_sk.diagnostics import GroupDiagnostics, factor_correlations, plot_factor_scatter
from fairprune_sk.models import MLP
from fairprune_sk.pruning import effective_state_dict

#: The nets of Fig. 4, in order: pruning without fine-tuning, then the methods' labels.
NETS = {
    "pruned, no fine-tuning": None,
    "plain fine-tuning": "plain",
    "Fair Aft (group_loss after)": "fair_after",
    "CEAG (accuracy_gap)": "ceag",
    "gap_and_loss": "gap_and_loss",
}
FIG2 = [("count", "gradient_norm"), ("accuracy_dense", "gradient_norm")]
FIG3 = [("boundary_closeness", "hessian_max_eig"), ("excess_risk", "hessian_max_eig")]
FIG4 = [("gradient_norm", "test_accuracy"), ("boundary_closeness", "test_accuracy")]
LABELS = {
    "count": "group size n_a (training rows measured)",
    "accuracy_dense": "θ*'s accuracy on the group (training)",
    "test_accuracy": "group test accuracy",
    "gradient_norm": "group gradient norm ‖g_a‖ (training)",
    "hessian_max_eig": "top Hessian eigenvalue λ(H_a) (training)",
    "boundary_closeness": "boundary closeness, mean p(1 − p) (training)",
    "excess_risk": "excess risk R(a) of pruning (training)",
}


def one_label(groups: pd.DataFrame) -> np.ndarray:
    """The group of each row as one string (``"White & Male"`` for several columns)."""
    return groups.astype(str).agg(" & ".join, axis=1).to_numpy()


def load(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Training and test arrays, one group label per row, and the training settings."""
    if args.csv is not None:
        from fairprune_sk.datasets import load_table

        split = load_table(args.csv, target=args.target, sensitive=args.sensitive,
                           n_train=args.n_train, random_state=seed)
        training, hidden, name = DEFAULT_TRAINING["adult"], DEFAULT_HIDDEN["adult"], split.name
    else:
        from fairprune_sk.datasets import load_dataset

        kwargs = {"sensitive": args.sensitive} if args.sensitive else {}
        split = load_dataset(args.dataset, model="mlp", n_train=args.n_train,
                             random_state=seed, **kwargs)
        key = "fashion_mnist" if args.dataset == "fashion_mnist" else "adult"
        training, hidden, name = DEFAULT_TRAINING[key], DEFAULT_HIDDEN[key], args.dataset
    X, y, A = split.X_train, split.y_train, one_label(split.groups_train)
    if args.csv is None and args.dataset == "fashion_mnist" and args.size_spread < 1:
        X, y, A = spread_sizes(X, y, A, args.size_spread, seed)
    rng = np.random.default_rng(seed)
    measured = (np.arange(len(y)) if args.n_diag is None or args.n_diag >= len(y)
                else np.sort(rng.choice(len(y), size=args.n_diag, replace=False)))
    return {"X": X, "y": y, "A": A, "X_test": split.X_test, "y_test": split.y_test,
            "A_test": one_label(split.groups_test), "training": training,
            "hidden": tuple(args.hidden or hidden), "name": name, "measured": measured}


def spread_sizes(X: np.ndarray, y: np.ndarray, A: np.ndarray, spread: float,
                 seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep ``spread^(k / (K − 1))`` of the rows of the group ranked ``k`` (random ranks)."""
    rng = np.random.default_rng(seed)
    groups = np.unique(A)
    ranks = rng.permutation(len(groups))
    keep = []
    for group, rank in zip(groups, ranks, strict=True):
        rows = np.flatnonzero(A == group)
        n = max(2, round(len(rows) * spread ** (rank / max(len(groups) - 1, 1))))
        keep.append(rng.choice(rows, size=n, replace=False))
    keep = np.sort(np.concatenate(keep))
    return X[keep], y[keep], A[keep]


def factors(net: Any, data: dict[str, Any], args: argparse.Namespace, seed: int, *,
            at_theta_hat: bool) -> pd.DataFrame:
    """``GroupDiagnostics.by_group`` on the measured training rows (a uniform random subset
    of ``--n-diag``, so group sizes keep their proportions), with the group's test accuracy.

    ``at_theta_hat``: the factors at the net's own parameters (its reference is itself);
    otherwise at its dense reference θ*, with the excess risk of θ̂ against θ*.
    """
    reference = effective_state_dict(net.module_) if at_theta_hat else None
    rows = data["measured"]
    diag = GroupDiagnostics(net, data["X"][rows], data["y"][rows],
                            sensitive_features=data["A"][rows],
                            reference=reference, max_iter=args.max_iter, tol=args.tol,
                            random_state=seed)
    table = diag.by_group
    test = ExcessRiskFrame(net, data["X_test"], data["y_test"],
                           sensitive_features=data["A_test"]).by_group
    table["test_accuracy"] = test["accuracy_pruned"].reindex(table.index).to_numpy()
    table["converged"] = diag.hessian_convergence["converged"].to_numpy()
    return table


def run(args: argparse.Namespace) -> pd.DataFrame:
    parts = []
    for seed in args.seeds:
        data = load(args, seed)
        start = time.perf_counter()
        dense = FairConstrainedNet(
            MLP, module__hidden_units=data["hidden"], **data["training"],
            optimizer__momentum=0.9, constraint_phase="none", random_state=seed, verbose=0,
        )
        dense.fit(data["X"], data["y"], sensitive_features=data["A"])
        for label, method in NETS.items():
            net = copy.deepcopy(dense)
            if method is None:
                net.prune(args.rate)
                # Figs. 2-3: the factors at θ* and the excess risk of pruning alone
                table = factors(net, data, args, seed, at_theta_hat=False)
                table = table.join(factors(net, data, args, seed, at_theta_hat=True)[
                    ["gradient_norm", "boundary_closeness", "hessian_max_eig"]].add_prefix(
                    "own_"))
            else:
                net.set_params(max_epochs=args.fine_tune_epochs, **METHODS[method])
                net.prune(args.rate)
                net.partial_fit(data["X"], data["y"], sensitive_features=data["A"])
                table = factors(net, data, args, seed, at_theta_hat=True)
            table = table.assign(net=label, seed=seed, group=list(table.index))
            parts.append(table.reset_index(drop=True))
            own = table["own_gradient_norm" if method is None else "gradient_norm"]
            print(f"seed {seed} {label:<28} worst-group test accuracy "
                  f"{table['test_accuracy'].min():.3f}  ‖g_a‖ at θ̂ max/min "
                  f"{own.max() / own.min():.1f}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return pd.concat(parts, ignore_index=True)


def figures(table: pd.DataFrame, out: Path, name: str, rate: float) -> pd.DataFrame:
    """Write the three PNGs; return every panel's ρ and interval."""
    pruned = table[table["net"] == "pruned, no fine-tuning"]
    # Fig. 4 draws every net at its own parameters: pruning alone at θ̂ too
    fig4 = pd.concat([pruned.assign(**{c: pruned[f"own_{c}"] for c in
                                       ("gradient_norm", "boundary_closeness")}),
                      table[table["net"] != "pruned, no fine-tuning"]], ignore_index=True)
    specs = [
        ("fig2_gradient_norm.png", pruned, FIG2, None,
         f"Fig. 2, {name}: group gradient norm at θ* against group size and accuracy"),
        ("fig3_hessian.png", pruned, FIG3, None,
         f"Fig. 3, {name}: top Hessian eigenvalue at θ* against boundary closeness "
         f"and R(a) at rate {rate:g}"),
        ("fig4_mitigations.png", fig4, FIG4, "net",
         f"Fig. 4, {name}, rate {rate:g}: group test accuracy against ‖g_a‖ and\nboundary "
         "closeness, both at each net's own parameters θ̂"),
    ]
    stats = []
    for file, part, pairs, rows, title in specs:
        figure = plot_factor_scatter(part, pairs, rows=rows, labels=LABELS, title=title,
                                     panel_size=(4.4, 3.2) if rows else (5.0, 4.0))
        figure.savefig(out / file, dpi=100)
        stats.append(factor_correlations(part, pairs, rows=rows).assign(figure=file))
        print(f"wrote {out / file}")
    return pd.concat(stats, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=("fashion_mnist", "adult", "digits"),
                        default="fashion_mnist")
    parser.add_argument("--csv", default=None, help="your own table (.csv or .parquet)")
    parser.add_argument("--target", default=None, help="--csv: the label column")
    parser.add_argument("--sensitive", nargs="+", default=None,
                        help="--csv: the group column(s); adult: race sex (default)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training rows (default: fashion_mnist 20000, else all)")
    parser.add_argument("--size-spread", type=float, default=0.25,
                        help="fashion_mnist: the smallest class keeps this fraction (1: none)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--rate", type=float, default=None,
                        help="pruning rate (default: fashion_mnist 0.95, else 0.9)")
    parser.add_argument("--fine-tune-epochs", type=int, default=4)
    parser.add_argument("--hidden", nargs="+", type=int, default=None)
    parser.add_argument("--n-diag", type=int, default=5000,
                        help="training rows measured by GroupDiagnostics (uniform random)")
    parser.add_argument("--max-iter", type=int, default=30,
                        help="Hessian-vector products per group for λ(H_a)")
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/paper_figures")
    args = parser.parse_args()
    if args.csv is not None and (args.target is None or args.sensitive is None):
        parser.error("--csv needs --target (the label column) and --sensitive (the group "
                     "column(s))")
    if args.csv is None and args.dataset == "fashion_mnist" and args.n_train is None:
        args.n_train = 20_000
    if args.rate is None:
        args.rate = 0.95 if args.csv is None and args.dataset == "fashion_mnist" else 0.9
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    table = run(args)
    table.to_csv(out / "factors.csv", index=False)
    name = Path(args.csv).name if args.csv else args.dataset
    stats = figures(table, out, name, args.rate)
    stats.to_csv(out / "correlations.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(stats[["figure", "row", "x", "y", "rho", "low", "high", "n_points"]]
              .round(3).to_string(index=False))
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
