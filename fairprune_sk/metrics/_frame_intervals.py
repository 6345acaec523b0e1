"""Bootstrap intervals of :class:`ExcessRiskFrame`, in fairlearn's ``*_ci`` vocabulary.

The resampled group sums come from :mod:`._bootstrap`; each resample goes through the same
column function as the point estimates (:func:`._columns._column_table`), so every interval is
an interval of exactly the number the frame reports.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils._param_validation import (
    InvalidParameterError,
    StrOptions,
    validate_parameter_constraints,
)

from ._bootstrap import bootstrap_group_sums, quantiles
from ._columns import INTERVAL_COLUMNS, METHOD_CONSTRAINTS, _column_table, _group_reduce

NOT_BOOTSTRAPPED = (
    "{what} needs bootstrap intervals: build the frame with n_boot (e.g. n_boot=1000, "
    "ci_quantiles=[0.025, 0.975])"
)


class FrameIntervalsMixin:
    """The bootstrap half of :class:`~fairprune_sk.ExcessRiskFrame`.

    It reads what the frame's construction sets (``_per_sample``, ``_groups``, ``_by_group``,
    ``_n_boot``, ``_ci_quantiles``) and keeps the resampled tables in ``_boot_table``
    (resamples x groups x :data:`INTERVAL_COLUMNS`) and ``_boot_overall`` (resamples x
    :data:`INTERVAL_COLUMNS`), None without ``n_boot``.
    """

    def _bootstrap(self, n_boot: int, random_state: Any) -> None:
        if isinstance(random_state, np.random.RandomState):
            random_state = int(random_state.randint(np.iinfo(np.int32).max))
        small = self._by_group.index[self._by_group["count"] < 2].tolist()
        if small:
            warnings.warn(
                f"group(s) {small} have a single row: their bootstrap interval is that row's "
                "value (or NaN where a resample misses the row); collect more data for them",
                UserWarning,
                stacklevel=4,  # the caller of ExcessRiskFrame(...) or from_outputs
            )
        sums, counts = bootstrap_group_sums(
            self._per_sample, self._groups.codes, self._groups.n_groups, n_boot, random_state
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[..., None]  # NaN for a group absent from a resample
            overall_means = sums.sum(axis=1) / counts.sum(axis=1)[:, None]
        # the count column has no interval: it is a size, not an estimate
        self._boot_table = _column_table(counts, means, overall_means)[..., 1:]
        self._boot_overall = _column_table(
            counts.sum(axis=1)[:, None], overall_means[:, None, :], overall_means
        )[:, 0, 1:]
        absent = np.isnan(means[..., 2]).mean(axis=0)
        rarely = [g for g in self._by_group.index[absent > 0.05] if g not in small]
        if rarely:
            warnings.warn(
                f"group(s) {rarely} are missing from more than 5 % of the bootstrap resamples; "
                "their intervals use the resamples that contain them",
                UserWarning,
                stacklevel=4,  # the caller of ExcessRiskFrame(...) or from_outputs
            )

    @property
    def n_boot(self) -> int | None:
        """Number of bootstrap resamples (None: no intervals)."""
        return self._n_boot

    @property
    def ci_quantiles(self) -> tuple[float, ...] | None:
        """Quantiles of the intervals (None: no intervals)."""
        return self._ci_quantiles

    def _validate(self, params: dict[str, Any], constraints: dict[str, Any], method: str) -> None:
        """sklearn's check of a method's arguments, the message naming the frame's class."""
        validate_parameter_constraints(
            constraints, params, caller_name=f"{type(self).__name__}.{method}"
        )

    def _check_bootstrapped(self, what: str) -> None:
        if self._boot_table is None:
            raise ValueError(NOT_BOOTSTRAPPED.format(what=what))

    @property
    def by_group_ci(self) -> list[pd.DataFrame]:
        """One frame per quantile in ``ci_quantiles``, aligned with ``by_group``.

        The columns are :data:`INTERVAL_COLUMNS`: those of ``by_group`` but ``count`` (a group
        size has no interval).
        """
        self._check_bootstrapped("by_group_ci")
        return [
            pd.DataFrame(q, index=self._groups.index, columns=list(INTERVAL_COLUMNS))
            for q in quantiles(self._boot_table, self._ci_quantiles)
        ]

    @property
    def overall_ci(self) -> list[pd.Series]:
        """One series per quantile in ``ci_quantiles``, indexed by :data:`INTERVAL_COLUMNS`
        (those of ``overall`` but ``count``)."""
        self._check_bootstrapped("overall_ci")
        return [
            pd.Series(q, index=list(INTERVAL_COLUMNS))
            for q in quantiles(self._boot_overall, self._ci_quantiles)
        ]

    def _reduced_ci(self, kind: str, method: str) -> list[pd.Series]:
        self._check_bootstrapped(f"{kind}_ci" if kind in ("difference", "ratio") else
                                 f"group_{kind}_ci")
        samples = _group_reduce(self._boot_table, self._boot_overall, kind, method)
        return [pd.Series(q, index=list(INTERVAL_COLUMNS))
                for q in quantiles(samples, self._ci_quantiles)]

    def group_min_ci(self) -> list[pd.Series]:
        """Intervals of :meth:`group_min`, one series per quantile, indexed by
        :data:`INTERVAL_COLUMNS` (no ``count``)."""
        return self._reduced_ci("min", "between_groups")

    def group_max_ci(self) -> list[pd.Series]:
        """Intervals of :meth:`group_max`, one series per quantile, indexed by
        :data:`INTERVAL_COLUMNS` (no ``count``); ``excess_accuracy_gap`` is the interval of
        max ψ."""
        return self._reduced_ci("max", "between_groups")

    def difference_ci(self, method: str = "between_groups") -> list[pd.Series]:
        """Intervals of :meth:`difference`, one series per quantile, indexed by
        :data:`INTERVAL_COLUMNS` (no ``count``); ``excess_risk`` is the interval of ξ."""
        self._validate({"method": method}, METHOD_CONSTRAINTS, "difference_ci")
        return self._reduced_ci("difference", method)

    def ratio_ci(self, method: str = "between_groups") -> list[pd.Series]:
        """Intervals of :meth:`ratio`, one series per quantile, indexed by
        :data:`INTERVAL_COLUMNS` (no ``count``)."""
        self._validate({"method": method}, METHOD_CONSTRAINTS, "ratio_ci")
        return self._reduced_ci("ratio", method)

    def by_group_with_ci(self, columns: Sequence[str] = ("excess_risk", "excess_accuracy_gap",
                                                         "accuracy_drop")) -> pd.DataFrame:
        """``by_group`` plus ``<column>_ci_low`` / ``<column>_ci_high`` for ``columns``.

        ``columns`` are among :data:`INTERVAL_COLUMNS`. The bounds are the first and last of
        ``ci_quantiles``. Without ``n_boot`` this is ``by_group`` unchanged.
        """
        self._validate({"columns": columns}, {"columns": ["array-like"]}, "by_group_with_ci")
        if any(c not in INTERVAL_COLUMNS for c in columns):
            raise InvalidParameterError(
                f"The 'columns' parameter of {type(self).__name__}.by_group_with_ci must be a "
                f"sequence of columns among {list(INTERVAL_COLUMNS)}. Got {columns!r} instead."
            )
        table = self.by_group
        if self._boot_table is None:
            return table
        intervals = self.by_group_ci
        for column in columns:
            position = table.columns.get_loc(column) + 1
            table.insert(position, f"{column}_ci_low", intervals[0][column])
            table.insert(position + 1, f"{column}_ci_high", intervals[-1][column])
        return table

    def separated_pairs(
        self, column: str = "excess_risk", *, simultaneous: bool = False
    ) -> pd.DataFrame:
        """Pairs of groups whose intervals of ``column`` do not overlap.

        A conservative test of a real disparity: group ``higher``'s lower bound lies above group
        ``lower``'s upper bound.

        Parameters
        ----------
        column : str, default="excess_risk"
            A column of :data:`INTERVAL_COLUMNS`.
        simultaneous : bool, default=False
            False: the intervals of ``ci_quantiles`` (first and last). True: Bonferroni-adjusted
            intervals that hold for all ``G`` groups at once — quantiles ``α / (2G)`` and
            ``1 − α / (2G)`` of the same resamples, with ``1 − α`` the coverage of
            ``ci_quantiles`` — so that comparing many groups does not find separations by
            chance.

        Returns
        -------
        pandas.DataFrame
            Columns ``higher``, ``lower``, ``higher_low``, ``lower_high``, ``margin``; largest
            margin first; empty when every pair of intervals overlaps.
        """
        self._validate(
            {"column": column, "simultaneous": simultaneous},
            {"column": [StrOptions(set(INTERVAL_COLUMNS))], "simultaneous": ["boolean"]},
            "separated_pairs",
        )
        self._check_bootstrapped("separated_pairs")
        if simultaneous:
            alpha = 1.0 - (self._ci_quantiles[-1] - self._ci_quantiles[0])
            tail = alpha / (2 * self._groups.n_groups)
            samples = self._boot_table[..., INTERVAL_COLUMNS.index(column)]
            low, high = quantiles(samples, (tail, 1.0 - tail))
        else:
            intervals = self.by_group_ci
            low = intervals[0][column].to_numpy()
            high = intervals[-1][column].to_numpy()
        above = low[:, None] > high[None, :]
        rows, cols = np.nonzero(above)
        labels = list(self._groups.index)
        table = pd.DataFrame(
            {
                "higher": [labels[i] for i in rows],
                "lower": [labels[j] for j in cols],
                "higher_low": low[rows],
                "lower_high": high[cols],
                "margin": low[rows] - high[cols],
            }
        )
        return table.sort_values("margin", ascending=False, ignore_index=True)

