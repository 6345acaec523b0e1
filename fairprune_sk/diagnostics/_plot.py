"""The figure of :meth:`GroupDiagnostics.plot`: the factors per group, as the paper's Figs. 2-3."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _label(key: Any) -> str:
    """A group's label: the values of an intersectional group joined by commas."""
    return ", ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def plot_group_factors(
    frame: pd.DataFrame, *, has_reference: bool, figsize: tuple[float, float] | None = None
):
    """Four panels of bars per group from ``GroupDiagnostics.by_group`` (``frame``).

    Gradient norm, Hessian eigenvalue, boundary closeness, and either the Theorem 1 bound and
    the second-order estimate beside the measured ``R(a)`` (``has_reference``) or the output
    gradient norm. Returns the ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    labels = [_label(key) for key in frame.index]
    positions = np.arange(len(labels))
    fig, axes = plt.subplots(2, 2, figsize=figsize or (10, 7), constrained_layout=True)
    panels = [
        ("gradient_norm", "group gradient norm ‖g_a‖"),
        ("hessian_max_eig", "top Hessian eigenvalue λ(H_a)"),
        ("boundary_closeness", "boundary closeness mean f(1 − f)"),
    ]
    for ax, (column, title) in zip(axes.flat, panels, strict=False):
        ax.bar(positions, frame[column].to_numpy(), color="tab:blue")
        ax.set_title(title)
    last = axes.flat[3]
    if has_reference:
        width = 0.27
        bars = [("bound", "Theorem 1 bound", "tab:orange"),
                ("taylor_estimate", "2nd-order estimate", "tab:purple"),
                ("excess_risk", "measured R(a)", "tab:green")]
        for k, (column, label, color) in enumerate(bars):
            last.bar(positions + (k - 1) * width, frame[column].to_numpy(), width,
                     label=label, color=color)
        # the bound is often orders of magnitude above R(a): a symmetric log scale
        # keeps both (and negative values) readable
        measured = float(np.nanmax(np.abs(frame["excess_risk"].to_numpy()), initial=0.0))
        last.set_yscale("symlog", linthresh=max(measured / 10, 1e-12))
        last.axhline(0.0, color="black", linewidth=0.5)
        last.set_title("excess risk R(a), symlog scale")
        last.legend(fontsize="x-small", loc="best")
    else:
        last.bar(positions, frame["input_grad_norm"].to_numpy(), color="tab:blue")
        last.set_title("output gradient norm mean ‖∇_θ f(x)‖")
    name = ", ".join(str(n) for n in frame.index.names if n is not None)
    for ax in axes.flat:
        ax.set_xticks(positions)
        ax.set_xticklabels(labels, rotation=30, ha="right")
        ax.set_xlabel(name)
    return fig
