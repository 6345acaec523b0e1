"""FairConstrainedNet (fair_after) against fairlearn's ExponentiatedGradient on Adult.

Both wrap the same MLP and reach the same pruning rate (default 0.8) from the same seed;
both are audited against the same dense reference θ* (see :mod:`fairprune_sk.benchmark.methods`).
``fair_after`` trains one net (dense training, pruning, constrained fine-tuning);
``ExponentiatedGradient`` trains, prunes and fine-tunes one net per oracle call (up to
``max_iter``). The script prints both wall times, their ratio, and the test (and training)
fairness violation ξ (eq. 3) and accuracy gap of each, with the unmitigated ``none`` as the
baseline.

Target: ξ(fair_after) <= ξ(EG) in at least 5x less time.

Run: ``python benchmarks/bench_fair_vs_eg.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from fairprune_sk.benchmark.methods import fit_dense_reference, run_method
from fairprune_sk.benchmark.sweep import load_benchmark_data, net_params_for

SHOWN = ["accuracy", "fairness_violation", "accuracy_gap", "worst_group_accuracy",
         "train_fairness_violation", "train_accuracy_gap", "sparsity", "seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=0.8)
    parser.add_argument("--sensitive", nargs="+", default=["race"], choices=["race", "sex"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--fine-tune-epochs", type=int, default=2)
    parser.add_argument("--dual-lr", type=float, default=0.05)
    parser.add_argument("--eg-max-iter", type=int, default=50, help="fairlearn's default: 50")
    parser.add_argument("--eg-constraint", default="error_rate_parity",
                        choices=["error_rate_parity", "bounded_group_loss"])
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the table to this CSV file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_benchmark_data("adult", sensitive=args.sensitive, n_train=args.n_train)
    print(data.describe())
    for note in data.notes:
        print(note)
    params = net_params_for("mlp", dataset="adult", max_epochs=args.epochs,
                            fine_tune_epochs=args.fine_tune_epochs, dual_lr=args.dual_lr)
    split = dict(X_train=data.X_train, y_train=data.y_train, A_train=data.A_train,
                 X_test=data.X_test, y_test=data.y_test, A_test=data.A_test)
    start = time.perf_counter()
    dense = fit_dense_reference(data.X_train, data.y_train, seed=args.seed, net_params=params)
    print(f"dense reference: {time.perf_counter() - start:.1f} s, test accuracy "
          f"{dense.score(data.X_test, data.y_test):.4f}; pruning rate {args.rate}, "
          f"torch threads {torch.get_num_threads()}")

    rows = []
    for method, extra in (("none", {}), ("fair_after", {}),
                          ("eg", {"eg_params": {"max_iter": args.eg_max_iter},
                                  "eg_constraint": args.eg_constraint})):
        result = run_method(method, **split, rate=args.rate, seed=args.seed, net_params=params,
                            dense=dense, **extra)
        rows.append(result.summary)
        note = ""
        if method == "eg":
            note = (f" ({result.model.n_oracle_calls_} oracle calls, "
                    f"{int((result.model.weights_ > 0).sum())} nets in the mixture)")
        xi = result.summary["fairness_violation"]
        print(f"  {method:<10} {result.seconds:7.1f} s  xi={xi:.4f}  "
              f"gap={result.summary['accuracy_gap']:.4f}{note}", flush=True)
    table = pd.DataFrame(rows).set_index("method")
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print()
        print(table[SHOWN].to_string())
    fair, eg = table.loc["fair_after"], table.loc["eg"]
    speedup = eg["seconds"] / fair["seconds"]
    print(f"\nwall time EG / fair_after = {speedup:.1f}x "
          f"({eg['seconds']:.1f} s / {fair['seconds']:.1f} s; the 'none' run reuses theta*)")
    print(f"test xi: fair_after {fair['fairness_violation']:.4f} vs EG "
          f"{eg['fairness_violation']:.4f}; test accuracy gap: "
          f"fair_after {fair['accuracy_gap']:.4f} vs EG {eg['accuracy_gap']:.4f}")
    met = fair["fairness_violation"] <= eg["fairness_violation"] and speedup >= 5
    print(f"target (xi_fair <= xi_EG and >= 5x faster): {'met' if met else 'NOT met'}")
    if args.out:
        table.to_csv(args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
