"""Why pruning hurts some groups more: the factors of Theorem 1, measured per group.

Tran, Fioretto, Kim and Naidu, *Pruning has a disparate impact on model accuracy*, NeurIPS 2022
(arXiv 2205.13574), bound the group excess risk of eq. (2),
``R(a) = J(θ̂; D_a) − J(θ*; D_a)`` (θ* dense, θ̂ pruned, ``J`` the mean cross-entropy), by a
second-order Taylor expansion around the dense parameters (Theorem 1)::

    R(a) ≤ ‖g_a‖ · ‖θ̂ − θ*‖  +  ½ λ(H_a) · ‖θ̂ − θ*‖²  +  O(‖θ̂ − θ*‖³)

with ``g_a = ∇_θ J(θ*; D_a)`` the group gradient and ``λ(H_a)`` the largest eigenvalue of the
group Hessian ``H_a = ∇²_θ J(θ*; D_a)``. Proposition 1 relates ``‖g_a‖`` to the group's error and
size; Theorem 2 relates ``λ(H_a)`` to how close the group's samples lie to the decision boundary,
``f(x)(1 − f(x))`` for a binary net.

This package measures those factors:

- :func:`group_gradient_norms` – ``‖g_a‖`` for every group, accumulated over minibatches;
- :func:`hessian_vector_product` – ``H v`` by double backward over minibatches, never ``H``;
- :func:`top_hessian_eigenvalue` – ``λ(H_a)`` by Lanczos (default) or power iteration on
  Hessian-vector products;
- :func:`boundary_closeness` – ``f(1 − f)`` per sample (``p_max(1 − p_max)`` for several classes);
- :func:`output_gradient_norms` – ``‖∇_θ f(x)‖`` per sample, by ``torch.func.vmap(grad)``;
- :class:`GroupDiagnostics` – all of them per group for a fitted net, next to the measured
  excess risk and the Theorem 1 bound, with rank correlations and a plot;
- :func:`plot_factor_scatter` – the paper's Figs. 2-4 as scatter plots of groups × seeds with
  Spearman's ρ and a bootstrap interval over groups (:func:`factor_correlations`,
  :func:`spearman_with_interval` give the numbers).

The numerical functions take any ``torch.nn.Module`` that outputs logits. They compute in eval
mode (dropout off, batch norm on its running statistics), restore the caller's train/eval
flags, leave no ``.grad`` on the module's parameters and never change its parameters. A module
carrying ``torch.nn.utils.prune`` masks is evaluated at its effective (masked) weights, through a
plain copy without the pruning hooks; parameters are then named without the ``_orig`` suffix.

Modules (one concept each; the public names are imported from ``fairprune_sk.diagnostics``):

- ``_checks``: coercion of ``X``, ``y`` and group codes (plain arguments are checked by
  sklearn's ``validate_params``, through ``fairprune_sk._validation``);
- ``_functional``: logits of any module output, the caller's kept train/eval flags and
  ``.grad``, minibatches, folding a ``params=`` state_dict;
- ``_evaluator``: a module evaluated at chosen parameters (``torch.func.functional_call``):
  losses, gradients, per-sample output gradients;
- ``_hessian``: the Hessian-vector product ``v ↦ H v``, keeping the first-order graph;
- ``_eigen``: Lanczos and power iteration on a symmetric operator;
- ``_factors``: the public measuring functions above;
- ``_group``: :class:`GroupDiagnostics`;
- ``_plot``: its figure and the factor scatter plots.
"""

from ._eigen import EIGEN_METHODS
from ._factors import (
    OUTPUTS,
    boundary_closeness,
    group_gradient_norms,
    hessian_vector_product,
    output_gradient_norms,
    top_hessian_eigenvalue,
)
from ._group import CORRELATION_FACTORS, GroupDiagnostics
from ._plot import factor_correlations, plot_factor_scatter, spearman_with_interval

__all__ = [
    "CORRELATION_FACTORS",
    "EIGEN_METHODS",
    "OUTPUTS",
    "GroupDiagnostics",
    "boundary_closeness",
    "factor_correlations",
    "group_gradient_norms",
    "hessian_vector_product",
    "output_gradient_norms",
    "plot_factor_scatter",
    "spearman_with_interval",
    "top_hessian_eigenvalue",
]
