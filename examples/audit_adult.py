"""Audit the disparate impact of pruning on the bundled Adult data, then mitigate it.

Run: ``python examples/audit_adult.py``. Prints the per-group
excess risk R(a) (eq. 2) and the fairness violation ξ (eq. 3) of a globally pruned MLP, then the
same for a FairConstrainedNet that fine-tunes the pruned net under equal excess risk, and writes
``adult_audit.png`` (per-group excess risk, both nets).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from fairprune_sk import ExcessRiskFrame, FairConstrainedNet, PrunableNetClassifier  # noqa: E402
from fairprune_sk.datasets import load_adult  # noqa: E402
from fairprune_sk.models import MLP  # noqa: E402

torch.set_num_threads(1)  # the fastest on a busy machine (docs/getting-started.md, Threads)
RATE = 0.9
data = load_adult()
race_train, race_test = data.A_train["race"], data.A_test["race"]
common = dict(module__hidden_units=(64, 64), max_epochs=8, lr=0.05, batch_size=256,
              random_state=0, verbose=0)

# 1. plain: train dense, prune 90 % of the weights (global magnitude), fine-tune 2 epochs
plain = PrunableNetClassifier(MLP, pruning_rate=RATE, fine_tune_epochs=2, **common)
pipe = make_pipeline(data.preprocessor, plain).fit(data.X_train, data.y_train)
Xt_train, Xt_test = pipe[:-1].transform(data.X_train), pipe[:-1].transform(data.X_test)
audit = ExcessRiskFrame(plain, Xt_test, data.y_test, sensitive_features=race_test)
print(f"plain pruning at {RATE:.0%}: sparsity {plain.sparsity_:.3f}")
print(audit.by_group[["count", "excess_risk", "accuracy_dense", "accuracy_pruned"]].round(4))
print(f"xi = {audit.fairness_violation:.4f}, accuracy gap = {audit.accuracy_gap:.4f}\n")

# 2. mitigated: same dense training, then fine-tuning of the pruned net under equal excess risk,
#    J(θ; D_a) − J(θ*; D_a) = J(θ; D) − J(θ*; D) for every race group (Lagrangian dual)
fair = FairConstrainedNet(MLP, pruning_rate=RATE, fine_tune_epochs=2, dual_lr=2.0,
                          constraint_phase="after", constraint_target="excess_risk", **common)
fair.fit(Xt_train, data.y_train, sensitive_features=race_train)
mitigated = ExcessRiskFrame(fair, Xt_test, data.y_test, sensitive_features=race_test)
print("FairConstrainedNet (constraint after pruning): multipliers")
print(fair.multipliers_.round(3))
print(mitigated.by_group[["count", "excess_risk", "accuracy_pruned"]].round(4))
print(f"xi = {mitigated.fairness_violation:.4f}, accuracy gap = {mitigated.accuracy_gap:.4f}")

ax = audit.by_group["excess_risk"].to_frame("plain").join(
    mitigated.by_group["excess_risk"].to_frame("FairConstrainedNet")).plot.bar(rot=20)
ax.set_ylabel("excess risk R(a) on test data")
ax.set_title(f"Adult, race groups, {RATE:.0%} of weights pruned")
plt.tight_layout()
plt.savefig("adult_audit.png", dpi=120)
print("wrote adult_audit.png")
