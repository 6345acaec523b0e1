"""Audit pruning on your own table, as a library call: the same steps as ``fairprune audit --csv``.

Run: ``python examples/audit_your_table.py``. It writes a CSV of 3,000 bundled Adult rows as a
stand-in for your file, reads it with ``load_table`` (numeric columns scaled, the others one-hot
encoded, a split stratified by label × group), trains an MLP, prunes copies of it at three
rates with ``audit_pruning`` and prints the per-group report.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from fairprune_sk import PrunableNetClassifier
from fairprune_sk.audit import audit_pruning
from fairprune_sk.datasets import load_adult, load_table

torch.set_num_threads(1)  # the fastest on a busy machine (docs/getting-started.md, Threads)

# your file: any CSV or Parquet table with a label column and group columns
adult = load_adult()
table = adult.X_train.iloc[:3000].assign(
    income=np.where(adult.y_train.iloc[:3000] == 1, ">50K", "<=50K"))
path = Path(tempfile.mkdtemp()) / "people.csv"
table.to_csv(path, index=False)

data = load_table(path, target="income", sensitive=["sex"], test_size=0.3)
print(data.describe())
net = PrunableNetClassifier(**data.defaults.net_params(), random_state=0).fit(data.X_train,
                                                                              data.y_train)
audit = audit_pruning(net, data.X_train, data.y_train, data.X_test, data.y_test,
                      data.groups_test, data.defaults.rates, n_boot=200, random_state=0)
print(audit.report())
