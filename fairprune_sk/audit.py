"""The audit as a library call: prune copies of a fitted dense net at several rates (or quantize
them at several bit widths), build one :class:`~fairprune_sk.ExcessRiskFrame` per level, say in
plain words who paid, and draw it.

``fairprune audit`` (:mod:`fairprune_sk.cli.audit`) loads the data, trains the net, calls
:func:`audit_pruning` and prints the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params

from .metrics import ExcessRiskFrame

__all__ = ["CI_COLUMNS", "COMPRESSIONS", "MEANINGS", "OutputsAudit", "PruningAudit",
           "audit_outputs", "audit_pruning"]

#: What :func:`audit_pruning` does to each copy: prune it at a rate, or quantize it to a width.
COMPRESSIONS = ("prune", "quantize")

#: Columns of the audit table that get ``_ci_low`` / ``_ci_high`` bootstrap bounds.
CI_COLUMNS = ("excess_risk", "excess_accuracy_gap", "accuracy_drop")

#: What the audit's numbers mean, one line each.
MEANINGS = (
    "R(a), excess_risk: the group's cross-entropy after compression (pruning or quantization) "
    "minus before (eq. 2); > 0 means the compression cost the group.",
    "xi, fairness_violation: the largest gap between two groups' R(a) (eq. 3); 0 means every "
    "group paid the same.",
    "psi, excess_accuracy_gap: the group's accuracy drop minus the overall drop (Balancing Act, "
    "ICLR 2024); > 0 means the group lost more accuracy than the average.",
)


def _group_name(label: Any) -> str:
    """A group label as text: ``"Black & Female"`` for an intersectional group."""
    return " & ".join(map(str, label)) if isinstance(label, tuple) else str(label)


def _with_interval(value: float, low: float, high: float, digits: int = 3,
                  sign: str = "+") -> str:
    """``"+0.123 [+0.050, +0.200]"``, or the value alone when the bounds are NaN."""
    if np.isnan(low):
        return f"{value:{sign}.{digits}f}"
    return f"{value:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _xi_text(frame: ExcessRiskFrame) -> str:
    """ξ of a frame with its interval when it has one."""
    if frame.n_boot is None:
        return f"{frame.fairness_violation:.3f}"
    low, high = frame.difference_ci()[0]["excess_risk"], frame.difference_ci()[-1]["excess_risk"]
    return _with_interval(frame.fairness_violation, low, high, sign="")


def _max_psi_text(frame: ExcessRiskFrame) -> str:
    """max ψ_g of a frame with its interval when it has one."""
    psi = frame.max_excess_accuracy_gap
    if frame.n_boot is None:
        return f"{psi:+.3f}"
    bounds = frame.group_max_ci()
    return _with_interval(psi, bounds[0]["excess_accuracy_gap"], bounds[-1]["excess_accuracy_gap"])


def _frame_table(frame: ExcessRiskFrame, compressed: str = "pruned") -> pd.DataFrame:
    """The printed per-group table of a frame, the group that lost most first: counts,
    accuracies (``acc <compressed>``: of the compressed model), R(a) and ψ with their
    intervals, flip rates."""
    ci = frame.by_group_ci if frame.n_boot is not None else None
    rows = []
    for group, row in frame.by_group.sort_values("excess_risk", ascending=False).iterrows():
        bounds = {
            column: (ci[0].loc[group, column], ci[-1].loc[group, column]) if ci is not None
            else (np.nan, np.nan)
            for column in ("excess_risk", "excess_accuracy_gap")
        }
        rows.append({
            "group": _group_name(group),
            "n": int(row["count"]),
            "acc dense": f"{row['accuracy_dense']:.3f}",
            f"acc {compressed}": f"{row['accuracy_pruned']:.3f}",
            "R(a) [95% CI]": _with_interval(row["excess_risk"], *bounds["excess_risk"]),
            "psi [95% CI]": _with_interval(row["excess_accuracy_gap"],
                                           *bounds["excess_accuracy_gap"]),
            "flip rate": f"{row['flip_rate']:.3f}",
        })
    return pd.DataFrame(rows)


def _verdict(frame: ExcessRiskFrame, heading: str, n_rows: int,
             trained: bool = True) -> list[str]:
    """Plain-words lines: who lost most, and whether the disparity is beyond the bootstrap
    noise (a pair of groups whose R(a) intervals do not overlap, also after a Bonferroni
    adjustment for comparing every group at once). ``trained``: the models were trained here,
    once (their seed noise is not in the intervals)."""
    by_group = frame.by_group
    worst = by_group["excess_risk"].idxmax()
    lines = [heading]
    if frame.n_boot is None:
        lines.append(f"  Lost most: {_group_name(worst)}, R(a) = "
                     f"{by_group.loc[worst, 'excess_risk']:.3f} (no intervals: no bootstrap "
                     "resamples were asked for)")
        return lines
    low, high = frame.by_group_ci[0], frame.by_group_ci[-1]

    def bounded(column: str) -> str:
        return _with_interval(by_group.loc[worst, column], low.loc[worst, column],
                              high.loc[worst, column])

    lines.append(
        f"  Lost most: {_group_name(worst)} (n={by_group.loc[worst, 'count']}), R(a) = "
        f"{bounded('excess_risk')}; accuracy {by_group.loc[worst, 'accuracy_dense']:.3f} -> "
        f"{by_group.loc[worst, 'accuracy_pruned']:.3f}, psi = {bounded('excess_accuracy_gap')}.")
    pairs = frame.separated_pairs("excess_risk")
    strict = frame.separated_pairs("excess_risk", simultaneous=True)
    n_groups, n_pairs = len(by_group), len(by_group) * (len(by_group) - 1) // 2
    xi = f"xi = {_xi_text(frame)}"
    if len(strict):
        top = strict.to_dict("records")[0]  # iloc would upcast integer group labels to float
        lines.append(
            f"  Significant: YES. {len(strict)} of {n_pairs} pairs of groups are separated "
            f"even by intervals adjusted for comparing {n_groups} groups at once "
            f"(Bonferroni); e.g. {_group_name(top['higher'])} [from {top['higher_low']:+.3f}] "
            f"lies entirely above {_group_name(top['lower'])} [up to "
            f"{top['lower_high']:+.3f}]. {xi}.")
    elif len(pairs):
        top = pairs.to_dict("records")[0]
        lines.append(
            f"  Significant: WEAK. {len(pairs)} of {n_pairs} pairs have non-overlapping 95 % "
            f"intervals (e.g. {_group_name(top['higher'])} [from {top['higher_low']:+.3f}] "
            f"above {_group_name(top['lower'])} [up to {top['lower_high']:+.3f}]), but none "
            f"once the intervals are adjusted for comparing {n_groups} groups at once: with "
            f"that many pairs, a separation this small can be chance. {xi}.")
    else:
        lines.append(
            f"  Significant: NO. Every pair of groups' 95 % intervals of R(a) overlaps, so "
            f"the disparity ({xi}) is within the noise of the {n_rows} evaluation rows.")
    intervals = f"  Intervals: {frame.n_boot} bootstrap resamples of the {n_rows} evaluation rows"
    lines.append(intervals + (", for this one trained net; training-seed noise is not included "
                              "(fairprune benchmark --seeds 5 measures it)." if trained else "."))
    return lines


def _plot_groups(frame: ExcessRiskFrame, title: str, path: Path) -> Path:
    """R(a) and ψ per group, with intervals, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(frame.by_group) + 2.0),
                                layout="constrained")
    frame.plot("excess_risk", ax=axes[0])
    frame.plot("excess_accuracy_gap", ax=axes[1], sort="excess_risk")  # same order
    figure.suptitle(title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _report(sections: list[Any], verdict: list[str]) -> str:
    """Text lines and tables, the verdict, and what the numbers mean, as one text."""
    lines = list(sections)
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 60):
        lines = [line if isinstance(line, str) else line.to_string(index=False)
                 for line in lines]
    lines += ["", *verdict, "", "What the numbers mean:"]
    lines += [f"  {line}" for line in MEANINGS]
    return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class PruningAudit:
    """What :func:`audit_pruning` measured.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (rate, group): ``rate`` (``bits`` for a quantization audit), ``sparsity``,
        the group column(s), the
        :class:`~fairprune_sk.ExcessRiskFrame` columns, ``<column>_ci_low`` /
        ``<column>_ci_high`` for :data:`CI_COLUMNS` (with ``n_boot``), and per rate
        ``fairness_violation`` (ξ, eq. 3), ``max_excess_accuracy_gap`` (both with intervals
        when bootstrapped), ``accuracy_gap`` and ``seconds``.
    frames : dict of float to ExcessRiskFrame
        The frame of each rate (each bit width, an int, for a quantization audit), in the
        order audited.
    dense_accuracy : float
        The dense net's accuracy on the evaluation rows.
    n_rows : int
        Evaluation rows.
    control : ExcessRiskFrame or None
        The dense net fine-tuned like the pruned ones but not pruned, against the dense net:
        the part of R(a) that the extra training alone makes (None without fine-tuning).
    compress : {"prune", "quantize"}, default="prune"
        What each copy went through (:data:`COMPRESSIONS`).
    """

    table: pd.DataFrame
    frames: dict[float, ExcessRiskFrame]
    dense_accuracy: float
    n_rows: int
    control: ExcessRiskFrame | None = None
    compress: str = "prune"

    @property
    def highest_rate(self) -> float:
        """The harshest compression audited: the highest rate (the fewest bits when
        quantizing)."""
        return min(self.frames) if self.compress == "quantize" else max(self.frames)

    def _level(self, level: float) -> str:
        """``"pruning rate 0.9"`` or ``"3 bits"``."""
        return f"{level:g} bits" if self.compress == "quantize" else f"pruning rate {level:g}"

    def report(self) -> str:
        """The audit in words: one table per rate, the :meth:`verdict` at the highest rate, and
        what the numbers mean (:data:`MEANINGS`)."""
        sections: list[Any] = []
        key = "bits" if self.compress == "quantize" else "rate"
        for rate, frame in self.frames.items():
            sparsity = self.table.loc[self.table[key] == rate, "sparsity"].iloc[0]
            sections += ["", f"{self._level(rate)} (sparsity {sparsity:.3f}): accuracy "
                             f"{frame.overall['accuracy_pruned']:.4f} (dense "
                             f"{self.dense_accuracy:.4f}); xi = {_xi_text(frame)}; max psi = "
                             f"{_max_psi_text(frame)}",
                         _frame_table(frame, "quantized" if key == "bits" else "pruned")]
        return _report(sections, self.verdict())

    def verdict(self) -> list[str]:
        """Plain-words lines about the highest rate: who lost most, and whether the disparity
        is beyond the bootstrap noise (a pair of groups whose R(a) intervals do not overlap,
        also after a Bonferroni adjustment for comparing every group at once)."""
        rate = self.highest_rate
        frame = self.frames[rate]
        harshest = "the fewest audited" if self.compress == "quantize" else "the highest audited"
        lines = _verdict(frame, f"At {self._level(rate)} ({harshest}):", self.n_rows)
        if self.control is not None:
            what = "quantization" if self.compress == "quantize" else "pruning"
            done = f"at {rate:g} bits" if self.compress == "quantize" else f"pruned at {rate:g}"
            lines.append(
                f"  Control: the dense net fine-tuned the same epochs WITHOUT {what} has xi = "
                f"{_xi_text(self.control)} ({done}: {_xi_text(frame)}). The part of the "
                f"disparity the control shows comes from the extra training, not from {what}.")
        return lines

    def plot(self, prefix: str | Path) -> list[Path]:
        """Draw and write the audit's two figures beside ``prefix``.

        ``<stem>_groups.png``: R(a) and ψ per group at the highest rate, with intervals.
        ``<stem>_accuracy_change.png``: each group's accuracy change from the dense net against
        the pruning rate, with interval bands (the paper's Fig. 1); for a quantization audit,
        against the bits, fewer to the right.

        Parameters
        ----------
        prefix : str or Path
            A file path whose folder and stem name the figures (``out/audit.csv`` gives
            ``out/audit_groups.png`` and ``out/audit_accuracy_change.png``).

        Returns
        -------
        list of Path
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        prefix = Path(prefix)
        highest = self.highest_rate
        frame = self.frames[highest]
        n_groups = len(frame.by_group)
        quantized = self.compress == "quantize"
        what = "quantization" if quantized else "pruning"
        paths = [_plot_groups(frame, f"Who paid for {what} at {self._level(highest)}",
                              prefix.with_name(f"{prefix.stem}_groups.png"))]

        rates = sorted(self.frames)
        figure, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
        colors = plt.get_cmap("tab10" if n_groups <= 10 else "tab20")(np.arange(n_groups) % 20)
        # the dense net itself (rate 0, no fine-tuning) changes nothing: every line starts at 0
        anchor = [] if 0.0 in self.frames or quantized else [0.0]
        xs = anchor + rates
        zeros = [0.0] * len(anchor)
        for color, group in zip(colors, frame.by_group.index, strict=True):
            change = zeros + [-self.frames[r].by_group.loc[group, "accuracy_drop"] for r in rates]
            label = f"{_group_name(group)} (n={frame.by_group.loc[group, 'count']})"
            ax.plot(xs, change, marker="o", color=color, label=label)
            if frame.n_boot is not None:
                low = zeros + [-self.frames[r].by_group_ci[-1].loc[group, "accuracy_drop"]
                               for r in rates]
                high = zeros + [-self.frames[r].by_group_ci[0].loc[group, "accuracy_drop"]
                                for r in rates]
                ax.fill_between(xs, low, high, color=color, alpha=0.08)
        overall = zeros + [-self.frames[r].overall["accuracy_drop"] for r in rates]
        ax.plot(xs, overall, color="black", linestyle="--", linewidth=2, label="overall")
        ax.axhline(0.0, color="gray", linewidth=0.8)
        ax.set_xlabel("bits" if quantized else "pruning rate")
        if quantized:  # fewer bits, harsher compression: to the right, as higher rates are
            ax.set_xticks(rates)
            ax.invert_xaxis()
        ax.set_ylabel("accuracy change from the dense net")
        band = " (bands: 95 % bootstrap intervals)" if frame.n_boot is not None else ""
        ax.set_title(f"Per-group accuracy change with {what}{band}", fontsize=10)
        ax.legend(fontsize=7, loc="lower left", ncol=2 if n_groups > 6 else 1)
        paths.append(prefix.with_name(f"{prefix.stem}_accuracy_change.png"))
        figure.savefig(paths[1], dpi=120)
        plt.close(figure)
        return paths


def _frame_rows(frame: ExcessRiskFrame) -> pd.DataFrame:
    """The written table of one frame: its groups with intervals, then the frame's ξ, max ψ
    (with intervals when bootstrapped) and accuracy gap on every row."""
    table = frame.by_group_with_ci(CI_COLUMNS)
    table["fairness_violation"] = frame.fairness_violation
    table["max_excess_accuracy_gap"] = frame.max_excess_accuracy_gap
    if frame.n_boot is not None:
        xi_low, xi_high = frame.difference_ci()[0], frame.difference_ci()[-1]
        psi_low, psi_high = frame.group_max_ci()[0], frame.group_max_ci()[-1]
        table["fairness_violation_ci_low"] = xi_low["excess_risk"]
        table["fairness_violation_ci_high"] = xi_high["excess_risk"]
        table["max_excess_accuracy_gap_ci_low"] = psi_low["excess_accuracy_gap"]
        table["max_excess_accuracy_gap_ci_high"] = psi_high["excess_accuracy_gap"]
    table["accuracy_gap"] = frame.accuracy_gap
    return table


@validate_params(
    {
        "net": [HasMethods(["pruned_copy", "predict_proba"])],
        "X_train": ["array-like"],
        "y_train": ["array-like"],
        "X_test": ["array-like"],
        "y_test": ["array-like"],
        "sensitive_test": ["array-like"],
        "rates": ["array-like"],
        "method": [str, None],
        "fine_tune_epochs": [Interval(Integral, 0, None, closed="left")],
        "n_boot": [Interval(Integral, 1, None, closed="left"), None],
        "control": ["boolean", None],
        "random_state": ["random_state"],
        "compress": [StrOptions(set(COMPRESSIONS))],
        "sensitive_train": ["array-like", None],
    },
    prefer_skip_nested_validation=True,
)
def audit_pruning(
    net: Any,
    X_train: Any,
    y_train: Any,
    X_test: Any,
    y_test: Any,
    sensitive_test: Any,
    rates: Sequence[float],
    *,
    method: str | None = None,
    fine_tune_epochs: int = 0,
    n_boot: int | None = None,
    control: bool | None = None,
    random_state: Any = None,
    compress: str = "prune",
    sensitive_train: Any = None,
) -> PruningAudit:
    """Audit a fitted dense net pruned at each rate: per-group R(a), ξ and ψ, with intervals.

    With ``compress="quantize"`` each copy is quantized instead
    (:meth:`~fairprune_sk.PrunableNetClassifier.quantized_copy`, simulated symmetric weights
    per output channel) at each bit width given in ``rates``, fine-tuned
    quantization-aware when ``fine_tune_epochs > 0``; the audit's vocabulary is the same.

    Parameters
    ----------
    net : PrunableNetClassifier
        Fitted dense net θ* (or a FairConstrainedNet); it is not modified (each rate prunes a
        copy; ``quantized_copy`` is needed with ``compress="quantize"``).
    X_train, y_train : array-like
        Fine-tuning data (used when ``fine_tune_epochs > 0`` or by data-driven methods).
    X_test, y_test : array-like
        Evaluation rows.
    sensitive_test : array-like, Series or DataFrame
        Their groups (several columns: intersectional groups).
    rates : sequence of float
        Distinct pruning rates in [0, 1); with ``compress="quantize"``, distinct bit widths
        (ints in [2, 8]).
    method : str, optional
        Pruning method (default: the net's ``pruning_method``).
    fine_tune_epochs : int >= 0, default=0
        Epochs of fine-tuning after pruning, masks held.
    n_boot : int >= 1, optional
        Bootstrap resamples of the evaluation rows for 95 % intervals (None: no intervals).
    control : bool, optional
        Also audit the dense net fine-tuned ``fine_tune_epochs`` without pruning (the part of
        R(a) the extra training alone makes). None: when ``fine_tune_epochs > 0``.
    random_state : None, int or RandomState
        Seed of the resamples.
    compress : {"prune", "quantize"}, default="prune"
        Prune each copy at a rate, or quantize it to a bit width.
    sensitive_train : array-like, Series or DataFrame, optional
        Groups of the training rows, by which a data-driven ``method``
        (:data:`~fairprune_sk.pruning.DATA_DRIVEN_METHODS`) ranks the weights (None: one
        group).

    Returns
    -------
    PruningAudit

    Raises
    ------
    ValueError
        No rate, a rate outside [0, 1) (a width outside [2, 8] when quantizing), or a rate
        given twice.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from fairprune_sk import PrunableNetClassifier
    >>> from fairprune_sk.audit import audit_pruning
    >>> from fairprune_sk.models import MLP
    >>> X, y = make_classification(n_samples=400, n_features=8, random_state=0)
    >>> X = X.astype(np.float32)
    >>> group = np.where(X[:, 0] > 0, "a", "b")
    >>> net = PrunableNetClassifier(MLP, max_epochs=5, lr=0.1, random_state=0).fit(X, y)
    >>> audit = audit_pruning(net, X, y, X, y, group, [0.5, 0.9], n_boot=50, random_state=0)
    >>> audit.table[["rate", "sensitive_feature_0", "count"]]
       rate sensitive_feature_0  count
    0   0.5                   a    ...
    1   0.5                   b    ...
    2   0.9                   a    ...
    3   0.9                   b    ...
    >>> audit.verdict()[0]
    'At pruning rate 0.9 (the highest audited):'
    """
    from ._validation import check_args
    from .pruning import validate_rate
    from .quantization._grid import BITS

    quantize = compress == "quantize"
    if quantize:
        for bits in rates:
            check_args({"rates": BITS}, {"rates": bits}, "audit_pruning")
        rates = [int(bits) for bits in rates]
    else:
        rates = [validate_rate(rate, "rates") for rate in rates]
    if not rates:
        raise ValueError("rates must hold at least one pruning rate")
    repeated = sorted({rate for rate in rates if rates.count(rate) > 1})
    if repeated:
        raise ValueError(f"rates must be distinct; got {', '.join(f'{r:g}' for r in repeated)} "
                         "more than once")
    tables, frames = [], {}
    for rate in rates:
        start = time.perf_counter()
        if quantize:
            pruned = net.quantized_copy(rate)
            if fine_tune_epochs:
                pruned.fine_tune(X_train, y_train, fine_tune_epochs)
        else:
            pruned = net.pruned_copy(rate, method, X=X_train, y=y_train,
                                     fine_tune_epochs=fine_tune_epochs,
                                     sensitive_features=sensitive_train)
        frame = ExcessRiskFrame(pruned, X_test, y_test, sensitive_features=sensitive_test,
                                n_boot=n_boot, random_state=random_state)
        frames[rate] = frame
        table = _frame_rows(frame)
        table.insert(0, "sparsity", pruned.sparsity_)
        table.insert(0, "bits" if quantize else "rate", rate)
        table["seconds"] = time.perf_counter() - start
        tables.append(table)
    reference = None
    if control or (control is None and fine_tune_epochs > 0):
        tuned = net.pruned_copy(0.0, X=X_train, y=y_train, fine_tune_epochs=fine_tune_epochs)
        reference = ExcessRiskFrame(tuned, X_test, y_test, sensitive_features=sensitive_test,
                                    reference=net, n_boot=n_boot, random_state=random_state)
    first = frames[rates[0]]
    return PruningAudit(
        table=pd.concat(tables).reset_index(), frames=frames,
        dense_accuracy=float(first.overall["accuracy_dense"]), n_rows=len(np.asarray(y_test)),
        control=reference, compress=compress)


@dataclass(frozen=True, eq=False)
class OutputsAudit:
    """What :func:`audit_outputs` measured: one compressed model against its dense one.

    Attributes
    ----------
    frame : ExcessRiskFrame
        The per-group audit.
    table : pandas.DataFrame
        One row per group: the group column(s), the frame's columns, ``<column>_ci_low`` /
        ``<column>_ci_high`` for :data:`CI_COLUMNS` (with ``n_boot``), and on every row
        ``fairness_violation``, ``max_excess_accuracy_gap`` (with intervals when bootstrapped)
        and ``accuracy_gap``.
    n_rows : int
        Evaluation rows.
    """

    frame: ExcessRiskFrame
    table: pd.DataFrame
    n_rows: int

    def verdict(self) -> list[str]:
        """Plain-words lines: who lost most, and whether the disparity is beyond the noise."""
        return _verdict(self.frame, "The compressed model against the dense one:", self.n_rows,
                        trained=False)

    def report(self) -> str:
        """The audit in words: the per-group table, the :meth:`verdict`, and what the numbers
        mean (:data:`MEANINGS`)."""
        overall = self.frame.overall
        head = (f"compressed model: accuracy {overall['accuracy_pruned']:.4f} (dense "
                f"{overall['accuracy_dense']:.4f}); xi = {_xi_text(self.frame)}; max psi = "
                f"{_max_psi_text(self.frame)}")
        return _report(["", head, _frame_table(self.frame, "compressed")], self.verdict())

    def plot(self, prefix: str | Path) -> list[Path]:
        """``<stem>_groups.png`` beside ``prefix``: R(a) and ψ per group, with intervals.

        Parameters
        ----------
        prefix : str or Path
            A file path whose folder and stem name the figure.

        Returns
        -------
        list of Path
        """
        prefix = Path(prefix)
        return [_plot_groups(self.frame, "Who paid for the compression",
                             prefix.with_name(f"{prefix.stem}_groups.png"))]


@validate_params(
    {
        "y_true": ["array-like"],
        "proba_dense": ["array-like"],
        "proba_compressed": ["array-like"],
        "sensitive_features": ["array-like"],
        "classes": ["array-like", None],
        "n_boot": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def audit_outputs(
    y_true: Any,
    proba_dense: Any,
    proba_compressed: Any,
    *,
    sensitive_features: Any,
    classes: Any = None,
    n_boot: int | None = None,
    random_state: Any = None,
) -> OutputsAudit:
    """Audit outputs computed elsewhere: a compressed model's probabilities against the dense
    model's, per group, with intervals (no model is called, and torch is not needed).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    proba_dense, proba_compressed : array-like of shape (n_samples, n_classes)
        Class probabilities of the dense and the compressed model, columns in the order of
        ``classes``.
    sensitive_features : array-like, Series or DataFrame
        Groups (several columns: intersectional groups).
    classes : array-like of shape (n_classes,), optional
        Labels of the columns; ``np.unique(y_true)`` if None.
    n_boot : int >= 1, optional
        Bootstrap resamples of the rows for 95 % intervals.
    random_state : None, int or RandomState
        Seed of the resamples.

    Returns
    -------
    OutputsAudit

    Examples
    --------
    >>> from fairprune_sk.audit import audit_outputs
    >>> y = [0, 0, 1, 1, 1, 0]
    >>> dense = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6], [0.7, 0.3]]
    >>> small = [[0.6, 0.4], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.8, 0.2]]
    >>> audit = audit_outputs(y, dense, small, sensitive_features=list("aaabbb"))
    >>> audit.table[["sensitive_feature_0", "count", "excess_risk"]].round(3)
      sensitive_feature_0  count  excess_risk
    0                   a      3        0.366
    1                   b      3        0.091
    """
    frame = ExcessRiskFrame.from_outputs(y_true, proba_dense, proba_compressed,
                                         sensitive_features=sensitive_features, classes=classes,
                                         n_boot=n_boot, random_state=random_state)
    return OutputsAudit(frame=frame, table=_frame_rows(frame).reset_index(),
                        n_rows=len(np.asarray(y_true)))
