"""FairConstrainedNet: the Lagrangian dual method, phases, routing, scorers, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from factories import make_fair, make_net
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch.callbacks import Callback
from skorch.dataset import ValidSplit

from fairprune_sk import ExcessRiskFrame, PrunableNetClassifier
from fairprune_sk.metrics import PruningScorer, pruning_scorers


@pytest.fixture(scope="module")
def hard_minority():
    """A majority group and a small minority whose labels follow a different, noisier rule."""
    rng = np.random.default_rng(0)
    n_major, n_minor = 900, 100
    X = rng.normal(size=(n_major + n_minor, 6)).astype(np.float32)
    group = np.array(["major"] * n_major + ["minor"] * n_minor)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    minor = group == "minor"
    y[minor] = (X[minor, 2] - X[minor, 0] + 0.7 * rng.normal(size=n_minor) > 0).astype(int)
    return X, y, group


def _group_loss_gap(net, X, y, group):
    proba = net.predict_proba(X)
    losses = -np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, None))
    overall = losses.mean()
    return max(abs(losses[group == g].mean() - overall) for g in np.unique(group))


def test_dual_update_matches_hand_computation(tabular):
    X, y, group = tabular
    X = X.astype(np.float32)
    # one batch per epoch: the epoch-averaged violation is that of the initial weights
    params = dict(batch_size=len(y), max_epochs=1, dual_lr=0.7, constraint_phase="before")
    initial = make_fair(**{**params, "max_epochs": 0}).fit(X, y, sensitive_features=group)
    with torch.no_grad():
        logits = initial.module_(torch.as_tensor(X))
        losses = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y), reduction="none")
    losses = losses.double().numpy()
    expected = {g: 0.7 * abs(losses[group == g].mean() - losses.mean()) for g in ["a", "b", "c"]}

    fair = make_fair(**params).fit(X, y, sensitive_features=group)
    for g, value in expected.items():
        assert fair.multipliers_[g] == pytest.approx(value, rel=1e-3)  # float32 sums
    violations = fair.history[-1]["constraint_violation"]
    np.testing.assert_allclose(violations, np.array(list(expected.values())) / 0.7, rtol=1e-3)
    assert fair.history[-1]["multipliers"] == pytest.approx(list(fair.multipliers_))


def test_dual_lr_zero_trains_exactly_like_prunable_net(tabular):
    X, y, group = tabular
    common = dict(pruning_rate=0.5, fine_tune_epochs=2)
    fair = make_fair(dual_lr=0.0, constraint_phase="both", **common)
    fair.fit(X, y, sensitive_features=group)
    plain = make_net(**common).fit(X, y)
    for key, value in plain.module_.state_dict().items():
        assert torch.equal(value, fair.module_.state_dict()[key]), key
    assert (fair.multipliers_ == 0).all()


def test_constraint_shrinks_the_training_group_loss_gap(hard_minority):
    X, y, group = hard_minority
    params = dict(max_epochs=30, lr=0.05, batch_size=100, module__hidden_units=(16,))
    plain = make_net(**params).fit(X, y)
    fair = make_fair(dual_lr=2.0, constraint_phase="before", **params)
    fair.fit(X, y, sensitive_features=group)
    assert fair.multipliers_["minor"] > fair.multipliers_["major"] > 0
    assert _group_loss_gap(fair, X, y, group) < 0.8 * _group_loss_gap(plain, X, y, group)


@pytest.mark.parametrize(
    "phase, constrained_phases",
    [
        ("before", {"train"}),
        ("after", {"fine_tune"}),
        ("both", {"train", "fine_tune"}),
        ("none", set()),
    ],
)
def test_constraint_phase_decides_where_the_constraint_acts(tabular, phase, constrained_phases):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, pruning_rate=0.5, fine_tune_epochs=2, constraint_phase=phase)
    fair.fit(X, y, sensitive_features=group)
    active = {row["phase"] for row in fair.history if row["constraint_violation"] is not None}
    assert active == constrained_phases
    assert fair.sparsity_ == pytest.approx(0.5, abs=0.01)


def test_dense_fair_net_when_pruning_rate_is_zero(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, constraint_phase="after").fit(X, y, sensitive_features=group)
    assert all(row["constraint_violation"] is not None for row in fair.history)
    assert fair.dense_state_dict_ is None


def test_kickin_and_batchwise_dual_update(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=4, kickin=2, constraint_phase="before")
    fair.fit(X, y, sensitive_features=group)
    assert fair.history[1]["multipliers"] == [0.0, 0.0, 0.0]
    assert all(m > 0 for m in fair.history[-1]["multipliers"])
    # kickin counts the epochs of each run: of the fine-tuning too, not from the dense fit
    after = make_fair(max_epochs=3, kickin=1, pruning_rate=0.7, fine_tune_epochs=2,
                      constraint_phase="after").fit(X, y, sensitive_features=group)
    fine_tune = [row["multipliers"] for row in after.history if row["phase"] == "fine_tune"]
    assert fine_tune[0] == [0.0, 0.0, 0.0] and any(m > 0 for m in fine_tune[1])
    every_3 = make_fair(max_epochs=2, dual_update=3, constraint_phase="before")
    every_3.fit(X, y, sensitive_features=group)
    epoch = make_fair(max_epochs=2, constraint_phase="before").fit(X, y, sensitive_features=group)
    # 10 batches per epoch: three dual steps per epoch push the multipliers further
    assert every_3.multipliers_.sum() > epoch.multipliers_.sum()


def test_intersectional_groups_and_groups_absent_from_batches(tabular):
    X, y, _ = tabular
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"race": rng.choice(["w", "b"], len(y)), "sex": rng.choice(["m", "f"], len(y))}
    )
    frame.loc[:2, ["race", "sex"]] = ["x", "x"]  # a 3-sample group: absent from most batches
    fair = make_fair(max_epochs=3, batch_size=16, constraint_phase="before")
    fair.fit(X, y, sensitive_features=frame)
    assert isinstance(fair.multipliers_.index, pd.MultiIndex)
    assert len(fair.multipliers_) == 5
    assert np.isfinite(fair.multipliers_).all()


def test_groups_travel_through_the_validation_split(tabular):
    X, y, group = tabular
    fair = make_fair(
        max_epochs=2, train_split=ValidSplit(0.25, stratified=True), constraint_phase="before"
    )
    fair.fit(X, y, sensitive_features=group)
    assert "valid_loss" in fair.history[-1]
    assert len(fair.multipliers_) == 3


def test_unseen_group_at_scoring_is_reported(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, pruning_rate=0.5, fine_tune_epochs=1)
    fair.fit(X[:400], y[:400], sensitive_features=group[:400])
    test_groups = np.where(np.arange(200) < 20, "new", group[400:])
    frame = ExcessRiskFrame(fair, X[400:], y[400:], sensitive_features=test_groups)
    assert "new" in frame.by_group.index
    assert frame.by_group.loc["new", "count"] == 20


def test_routing_through_pipeline_gridsearch_and_cross_validate(tabular):
    X, y, group = tabular
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = make_pipeline(StandardScaler(), make_fair(max_epochs=2, fine_tune_epochs=1))
        search = GridSearchCV(
            pipe,
            {
                "fairconstrainednet__dual_lr": [0.01, 0.5],
                "fairconstrainednet__pruning_rate": [0.5, 0.9],
            },
            scoring=pruning_scorers(weight=2.0),
            refit="combined",
            cv=2,
        )
        search.fit(X, y, sensitive_features=group)
        assert search.best_estimator_[-1].multipliers_.index.tolist() == ["a", "b", "c"]
        assert np.all(search.cv_results_["mean_test_neg_fairness_violation"] <= 0)
        results = cross_validate(
            pipe,
            X,
            y,
            params={"sensitive_features": group},
            scoring={"xi": PruningScorer("fairness_violation")},
            cv=2,
        )
        assert len(results["test_xi"]) == 2


def test_plain_keywords_without_routing(tabular):
    X, y, group = tabular
    pipe = make_pipeline(StandardScaler(), make_fair(max_epochs=2))
    pipe.fit(X, y, fairconstrainednet__sensitive_features=group)
    assert len(pipe[-1].multipliers_) == 3


def test_scorers_match_the_frame(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, pruning_rate=0.7, fine_tune_epochs=1)
    fair.fit(X, y, sensitive_features=group)
    frame = ExcessRiskFrame(fair, X, y, sensitive_features=group)
    assert PruningScorer("fairness_violation")(fair, X, y, group) == pytest.approx(
        -frame.fairness_violation
    )
    assert PruningScorer("accuracy_gap")(fair, X, y, group) == pytest.approx(-frame.accuracy_gap)
    assert PruningScorer("combined", weight=3.0)(fair, X, y, group) == pytest.approx(
        fair.score(X, y) - 3.0 * frame.fairness_violation
    )
    dense = make_net(max_epochs=2).fit(X, y)
    assert PruningScorer("fairness_violation")(dense, X, y, group) == 0.0
    with pytest.raises(ValueError, match="enable_metadata_routing"):
        PruningScorer("combined")(fair, X, y)
    with pytest.raises(ValueError, match="'metric' parameter of PruningScorer"):
        PruningScorer("auc")


def test_missing_sensitive_features_says_how_to_pass_them(tabular):
    X, y, _ = tabular
    with pytest.raises(ValueError, match=r"sensitive_features.*enable_metadata_routing"):
        make_fair().fit(X, y)
    make_fair(max_epochs=1, constraint_phase="none").fit(X, y)  # no constraint, no groups needed


@pytest.mark.parametrize(
    "params, match",
    [
        ({"dual_lr": -0.1}, "dual_lr"),
        ({"constraint_phase": "later"}, "constraint_phase"),
        ({"dual_update": 0}, "dual_update"),
        ({"kickin": -1}, "kickin"),
    ],
)
def test_bad_params_are_named(tabular, params, match):
    X, y, group = tabular
    with pytest.raises(ValueError, match=match):
        make_fair(**params).fit(X, y, sensitive_features=group)


def test_wrong_length_and_failed_fit_leave_net_unchanged(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2).fit(X, y, sensitive_features=group)
    before = {k: v.clone() for k, v in fair.module_.state_dict().items()}
    multipliers = fair.multipliers_.copy()
    with pytest.raises(ValueError, match="sensitive_features has 10 rows but X and y have 600"):
        fair.fit(X, y, sensitive_features=group[:10])
    with pytest.raises(ValueError, match="groups not seen in fit"):
        fair.partial_fit(X, y, sensitive_features=np.full(len(y), "zzz"))
    for key, value in before.items():
        assert torch.equal(value, fair.module_.state_dict()[key])
    pd.testing.assert_series_equal(fair.multipliers_, multipliers)


def test_is_a_prunable_net_with_sample_weight(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2)
    assert isinstance(fair, PrunableNetClassifier)
    fair.fit(X, y, sensitive_features=group, sample_weight=np.where(y == 1, 3.0, 1.0))
    assert fair.predict(X).shape == y.shape


def test_excess_risk_target_uses_dense_losses_and_lowers_training_xi(hard_minority):
    X, y, group = hard_minority
    params = dict(
        max_epochs=10,
        lr=0.05,
        batch_size=100,
        module__hidden_units=(16,),
        pruning_rate=0.9,
        fine_tune_epochs=6,
        constraint_phase="after",
    )
    plain = make_net(**{k: v for k, v in params.items() if k != "constraint_phase"}).fit(X, y)
    fair = make_fair(dual_lr=5.0, constraint_target="excess_risk", **params)
    fair.fit(X, y, sensitive_features=group)
    # the constraint is on R(a) - R: its violation, recorded by the dual step, is the training
    # excess risk gap measured by ExcessRiskFrame (up to the weights moving within the epoch)
    plain_xi = ExcessRiskFrame(plain, X, y, sensitive_features=group).fairness_violation
    fair_xi = ExcessRiskFrame(fair, X, y, sensitive_features=group).fairness_violation
    assert fair.multipliers_.gt(0).all()
    assert fair_xi < plain_xi


# ------------------------------------------------------------------------------------------------
# CEAG (constraint_target="accuracy_gap"), tolerance, dual dynamics, divergence, constraint_split
# ------------------------------------------------------------------------------------------------
from collections import deque  # noqa: E402

from fairprune_sk.constrained import DivergenceError  # noqa: E402
from fairprune_sk.constrained._constraints import (  # noqa: E402
    GROUP_KEY,
    REFERENCE_CORRECT_KEY,
    REFERENCE_LOSS_KEY,
)
from fairprune_sk.constrained._dual import (  # noqa: E402
    GroupReplayBuffer,
    TailAverage,
    dual_step,
    excess_accuracy_gap,
    stratified_holdout,
)
from fairprune_sk.nets._data import INPUT_KEY, SAMPLE_WEIGHT_KEY  # noqa: E402

CEAG = dict(constraint_target="accuracy_gap", pruning_rate=0.7, fine_tune_epochs=2)


def dual_state(fair):
    """The dual state, a fitted attribute of the net."""
    return fair.dual_state_


def test_auto_parameters_resolve_per_target(tabular):
    X, y, group = tabular
    ceag = make_fair(max_epochs=1, dual_lr="auto", **CEAG).fit(X, y, sensitive_features=group)
    resolved = ("dual_lr_", "tolerance_", "dual_update_", "dual_dynamics_", "noise_margin_",
                "average_tail_")
    assert tuple(getattr(ceag, name) for name in resolved) == (1.0, 0.0, 20, "damped", 1.0, 0.25)
    paper = make_fair(max_epochs=1, dual_lr="auto").fit(X, y, sensitive_features=group)
    assert tuple(getattr(paper, name) for name in resolved) == (
        0.05, 0.0, "epoch", "gradient", 0.0, 0.0
    )


def test_proxy_gradient_equals_autograd_of_the_formula(tabular):
    X, y, group = tabular
    X = X.astype(np.float32)
    fair = make_fair(max_epochs=1, **CEAG).fit(X, y, sensitive_features=group)
    state = dual_state(fair)
    fair.phase_, state.heldout = "fine_tune", None
    state.multipliers = np.array([0.3, 0.0, 0.8])  # group "b" unpenalised
    rows = np.arange(64)
    codes = fair._encode_groups(group, len(y))[rows]
    reference = np.random.default_rng(0).uniform(0.1, 1.0, len(rows)).astype(np.float32)
    batch = {INPUT_KEY: X[rows], GROUP_KEY: codes, REFERENCE_LOSS_KEY: reference,
             REFERENCE_CORRECT_KEY: np.ones(len(rows), dtype=np.float32)}
    y_true = torch.as_tensor(y[rows])

    fair.module_.zero_grad()
    fair.get_loss(fair.infer(batch), y_true, X=batch, training=True).backward()
    ours = [p.grad.clone() for p in fair.module_.parameters()]

    fair.module_.zero_grad()
    logits = fair.module_(torch.as_tensor(X[rows]))
    excess = torch.nn.functional.cross_entropy(logits, y_true, reduction="none") - torch.as_tensor(
        reference)
    overall = excess.mean()
    lam = torch.as_tensor(state.multipliers, dtype=torch.float32)
    proxy = torch.stack([excess[torch.as_tensor(codes == g)].mean() - overall.detach()
                         for g in range(3)])
    mean_loss = torch.nn.functional.cross_entropy(logits, y_true)
    ((mean_loss + (lam * proxy).sum()) / (1 + lam.sum())).backward()
    for got, expected in zip(ours, (p.grad for p in fair.module_.parameters()), strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("target", ["group_loss", "excess_risk"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dynamics", ["gradient", "damped"])
def test_group_lagrangian_gradient_equals_autograd_of_the_formula(
    tabular, target, weighted, dynamics
):
    X, y, group = tabular
    X = X.astype(np.float32)
    fair = make_fair(max_epochs=1, dual_dynamics=dynamics, constraint_phase="before")
    fair.fit(X, y, sensitive_features=group)
    state = dual_state(fair)
    state.multipliers = np.array([0.3, 0.0, 0.8])  # group "b" unpenalised
    rng = np.random.default_rng(0)
    rows = np.arange(64)
    codes = fair._encode_groups(group, len(y))[rows]
    batch = {INPUT_KEY: X[rows], GROUP_KEY: codes}
    weight = torch.ones(len(rows))
    if weighted:
        weight = torch.as_tensor(rng.uniform(0.2, 2.0, len(rows)).astype(np.float32))
        batch[SAMPLE_WEIGHT_KEY] = weight.numpy()
    reference = torch.zeros(len(rows))
    if target == "excess_risk":
        reference = torch.as_tensor(rng.uniform(0.1, 1.0, len(rows)).astype(np.float32))
        batch[REFERENCE_LOSS_KEY] = reference.numpy()
    y_true = torch.as_tensor(y[rows])

    fair.module_.zero_grad()
    ours = fair.get_loss(fair.infer(batch), y_true, X=batch, training=True)
    ours.backward()
    ours_grad = [p.grad.clone() for p in fair.module_.parameters()]

    fair.module_.zero_grad()
    losses = torch.nn.functional.cross_entropy(
        fair.module_(torch.as_tensor(X[rows])), y_true, reduction="none"
    )
    excess = losses - reference
    overall = (excess * weight).sum() / weight.sum()
    lam = torch.as_tensor(state.multipliers, dtype=torch.float32)
    gaps = torch.stack([
        (excess * weight)[torch.as_tensor(codes == g)].sum()
        / weight[torch.as_tensor(codes == g)].sum() - overall
        for g in range(3)
    ])
    expected = (losses * weight).mean() + (lam * gaps.abs()).sum()
    if dynamics == "damped":
        expected = expected / (1 + lam.sum())
    expected.backward()
    torch.testing.assert_close(ours.detach(), expected.detach())
    for got, want in zip(ours_grad, (p.grad for p in fair.module_.parameters()), strict=True):
        torch.testing.assert_close(got, want)


def test_dual_step_solves_a_toy_problem():
    # min θ²/2 s.t. 0.5 − θ ≤ 0: θ* = 0.5, λ* = 0.5 (θ − λ = 0); primal steps on the normalised
    # Lagrangian (θ²/2 + λ(0.5 − θ)) / (1 + λ), dual steps through dual_step
    for damping in (0.0, 1.0):
        theta, lam, error = 3.0, np.zeros(1), np.zeros(1)
        for _ in range(3000):
            theta -= 0.1 * (theta - lam[0]) / (1 + lam[0])
            lam, error = dual_step(lam, np.array([0.5 - theta]), error, lr=0.05, cap=1.0,
                                   damping=damping)
        assert theta == pytest.approx(0.5, abs=1e-3) and lam[0] == pytest.approx(0.5, abs=1e-3)
    # the arithmetic: projection, cap, tolerance, PI term, NaN = no estimate
    lam, error = dual_step(np.array([0.2, 0.9, 0.1, 0.4]), np.array([0.5, 0.5, -1.0, np.nan]),
                           np.array([0.1, 0.0, 0.0, 7.0]), lr=0.5, tolerance=0.1, cap=1.0,
                           damping=2.0)
    np.testing.assert_allclose(lam, [0.2 + 0.5 * (0.4 + 2.0 * 0.3), 1.0, 0.0, 0.4])
    np.testing.assert_allclose(error, [0.4, 0.4, -1.1, 7.0])


def test_replay_buffer_keeps_the_last_values_of_every_group():
    rng = np.random.default_rng(0)
    buffer, expected = GroupReplayBuffer(4, size=5), [deque(maxlen=5) for _ in range(4)]
    assert np.isnan(buffer.means()).all()
    for n in (3, 0, 17, 1, 8, 30):
        codes, values = rng.integers(0, 3, n), rng.normal(size=n)  # group 3 never seen
        buffer.push(codes, values)
        for code, value in zip(codes, values, strict=True):
            expected[code].append(value)
        means = [np.mean(d) if d else np.nan for d in expected]
        np.testing.assert_allclose(buffer.means(), means)
    psi = excess_accuracy_gap(np.array([0.1, 0.3, np.nan]), np.array([0.75, 0.25, 0.5]))
    np.testing.assert_allclose(psi, [0.1 - 0.15, 0.3 - 0.15, np.nan])


def test_groups_without_estimates_leave_the_others_bits_alone():
    # a group with no estimate (NaN) or a partly empty buffer is masked: the other groups'
    # multipliers, errors, ψ, means and standard errors keep their bits
    rng = np.random.default_rng(0)
    lam, violation, error = rng.uniform(0, 2, 4), rng.normal(size=4), rng.normal(size=4)
    fast = dual_step(lam, violation, error, lr=0.7, tolerance=0.01, cap=1.5, damping=0.3)
    masked = dual_step(np.append(lam, 0.4), np.append(violation, np.nan), np.append(error, 0.0),
                       lr=0.7, tolerance=0.01, cap=1.5, damping=0.3)
    for got, want in zip(fast, masked, strict=True):
        np.testing.assert_array_equal(got, want[:4], strict=True)
    drop, shares = rng.normal(size=4), rng.uniform(0.1, 1, 4)
    np.testing.assert_array_equal(
        excess_accuracy_gap(drop, shares),
        excess_accuracy_gap(np.append(drop, np.nan), np.append(shares, 0.3))[:4],
    )
    full, partial = GroupReplayBuffer(2, size=6), GroupReplayBuffer(3, size=6)
    codes, values = rng.integers(0, 2, 40), rng.normal(size=40)
    full.push(codes, values)
    partial.push(np.append(codes, 2), np.append(values, 1.0))  # group 2 stays partly empty
    assert full.count.min() == full.size > partial.count.min()
    np.testing.assert_array_equal(full.standard_errors(), partial.standard_errors()[:2])
    np.testing.assert_array_equal(full.means(), partial.means()[:2])


def test_unconstrained_phase_trains_on_the_plain_nets_batches(tabular):
    # constraint_phase="after": the dense epochs train exactly as PrunableNetClassifier does
    X, y, group = tabular
    common = dict(max_epochs=2, pruning_rate=0.5, fine_tune_epochs=1)
    pruned = make_fair(constraint_phase="after", **{**common, "fine_tune_epochs": 0})
    pruned.fit(X, y, sensitive_features=group)
    plain = make_net(**{**common, "fine_tune_epochs": 0}).fit(X, y)
    for key, value in plain.module_.state_dict().items():
        assert torch.equal(value, pruned.module_.state_dict()[key]), key


@pytest.mark.parametrize("target", ["group_loss", "accuracy_gap"])
def test_dataloader_batches_fit_the_weights_of_in_memory_batches(tabular, target):
    # a loader option takes skorch's DataLoader path, whose metadata are tensors; the in-memory
    # path gives them as ndarrays: the same batches, so the same weights, bit for bit
    X, y, group = tabular
    weight = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    params = dict(constraint_target=target, constraint_phase="both", pruning_rate=0.7,
                  fine_tune_epochs=2, dual_update=2)
    fast = make_fair(**params).fit(X, y, sensitive_features=group, sample_weight=weight)
    slow = make_fair(**params, iterator_train__pin_memory=False)
    slow.fit(X, y, sensitive_features=group, sample_weight=weight)
    assert (fast.multipliers_ > 0).any()
    for key, value in slow.module_.state_dict().items():
        assert torch.equal(fast.module_.state_dict()[key], value), key


def test_ceag_records_psi_and_lowers_the_training_accuracy_gap(hard_minority):
    X, y, group = hard_minority
    params = dict(max_epochs=10, lr=0.05, batch_size=100, module__hidden_units=(16,),
                  pruning_rate=0.9, fine_tune_epochs=4, dual_update=2)
    fair = make_fair(constraint_target="accuracy_gap", dual_lr=1.0, tolerance=0.0, **params)
    fair.fit(X, y, sensitive_features=group)
    fine_tune = [row for row in fair.history if row["phase"] == "fine_tune"]
    assert all(len(row["constraint_violation"]) == 2 for row in fine_tune)
    assert fair.multipliers_.max() > 0 and fair.multipliers_.max() <= 1.0  # damped: capped


def test_all_zero_multipliers_train_exactly_like_plain(tabular):
    X, y, group = tabular
    fair = make_fair(tolerance=10.0, average_tail=0.0, **CEAG)
    fair.fit(X, y, sensitive_features=group)
    assert (fair.multipliers_ == 0).all()
    plain = make_net(pruning_rate=0.7, fine_tune_epochs=2).fit(X, y)
    for key, value in plain.module_.state_dict().items():
        assert torch.equal(value, fair.module_.state_dict()[key]), key


def test_huge_tolerance_keeps_group_loss_multipliers_at_zero(tabular):
    X, y, group = tabular
    fair = make_fair(tolerance=1e3, dual_lr=5.0, max_epochs=3, constraint_phase="before")
    assert (fair.fit(X, y, sensitive_features=group).multipliers_ == 0).all()


def test_divergence_stops_with_an_error_and_restores_the_net(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, constraint_phase="before").fit(X, y, sensitive_features=group)
    before = {k: v.clone() for k, v in fair.module_.state_dict().items()}
    history_length = len(fair.history)
    fair.set_params(dual_lr=1e30, max_epochs=6, lr=1.0)
    with pytest.raises(DivergenceError, match=r"dual_lr \(got 1e\+30\)"):
        fair.fit(X, y, sensitive_features=group)
    assert len(fair.history) == history_length and fair.dual_lr == 1e30
    for key, value in before.items():
        assert torch.equal(value, fair.module_.state_dict()[key])


def test_failed_partial_fit_restores_the_dual_state(tabular):
    X, y, group = tabular
    fair = make_fair(max_epochs=2, constraint_phase="before").fit(X, y, sensitive_features=group)
    callback, replay = dict(fair.callbacks_)["dual_ascent"], dual_state(fair).replay
    multipliers = fair.multipliers_.copy()
    fair.set_params(dual_lr=1e30, max_epochs=6, lr=1.0)
    with pytest.raises(DivergenceError):
        fair.partial_fit(X, y, sensitive_features=group)
    assert dict(fair.callbacks_)["dual_ascent"] is callback  # the same callback object
    pd.testing.assert_series_equal(fair.multipliers_, multipliers)
    assert dual_state(fair).replay is replay


def test_constraint_split_is_stratified_by_group_and_label(tabular):
    X, y, group = tabular
    codes = pd.factorize(group)[0]
    held = stratified_holdout(codes, y, 0.25, random_state=0)
    for g in range(3):
        for label in (0, 1):
            stratum = (codes == g) & (y == label)
            assert held[stratum].sum() == np.floor(0.25 * stratum.sum() + 0.5)
    assert not np.array_equal(held, stratified_holdout(codes, y, 0.25, random_state=1))
    fair = make_fair(**{**CEAG, "constraint_split": 0.25}).fit(X, y, sensitive_features=group)
    assert len(dual_state(fair).heldout["y"]) == held.sum()
    # the primal fine-tuning steps never see the held-out rows; dense training sees all
    rows_seen = [sum(batch["train_batch_size"] for batch in row["batches"]) for row in fair.history]
    phases = list(fair.history[:, "phase"])
    assert {n for n, p in zip(rows_seen, phases, strict=True) if p == "fine_tune"} == {
        len(y) - held.sum()}
    assert {n for n, p in zip(rows_seen, phases, strict=True) if p == "train"} == {len(y)}
    tiny = group.copy()
    tiny.iloc[0] = "lonely"  # one row: nothing to hold out
    with pytest.raises(ValueError, match="constraint_split=0.25 leaves group 'lonely'"):
        make_fair(**{**CEAG, "constraint_split": 0.25}).fit(X, y, sensitive_features=tiny)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"tolerance": -0.1}, "tolerance"),
        ({"constraint_split": 1.0}, "constraint_split"),
        ({"multiplier_cap": 0.0}, "multiplier_cap"),
        ({"dual_dynamics": "fast"}, "dual_dynamics"),
        ({"replay_size": 0}, "replay_size"),
        ({"average_tail": 1.0}, "average_tail"),
        ({"average_tail": -0.25}, "average_tail"),
        ({"noise_margin": -1.0}, "noise_margin"),
    ],
)
def test_bad_ceag_params_are_named(tabular, params, match):
    X, y, group = tabular
    with pytest.raises(ValueError, match=match):
        make_fair(**params).fit(X, y, sensitive_features=group)


def test_best_iterate_keeps_the_selected_weights(tabular):
    X, y, group = tabular
    params = {**CEAG, "constraint_split": 0.25, "dual_update": 2}
    fair = make_fair(**params).fit(X, y, sensitive_features=group)
    last = fair.history[-1]
    assert 1 <= last["selected_iterate"] <= last["iterates"]
    state = fair.module_.state_dict()
    for key, value in dual_state(fair).best_state.items():
        assert torch.equal(value, state[key]), key
    final = make_fair(best_iterate=False, **params).fit(X, y, sensitive_features=group)
    assert "selected_iterate" not in final.history[-1]


# ------------------------------------------------------------------ tail averaging, margin
class _IterateRecorder(Callback):
    """The weights after every fine-tuning batch: an independent record of the iterates."""

    def initialize(self):
        self.states = []
        return self

    def on_batch_end(self, net, training=False, **kwargs):
        if training and net.phase_ == "fine_tune":
            self.states.append(
                {k: v.detach().double().clone() for k, v in net.module_.named_parameters()}
            )


def test_tail_average_is_the_mean_of_the_iterates_at_the_tail_dual_steps(tabular):
    X, y, group = tabular  # 600 rows, batches of 64: 10 per epoch, 20 in 2 fine-tuning epochs
    recorder = _IterateRecorder()
    fair = make_fair(**CEAG, dual_update=3, average_tail=0.5, callbacks=[recorder])
    fair.fit(X, y, sensitive_features=group)
    states = recorder.states
    assert len(states) == 20
    # tail = batches 11-20; dual steps every 3 batches, counted across epochs: 12, 15, 18; + final
    expected = {k: sum(states[b - 1][k] for b in (12, 15, 18, 20)) / 4 for k in states[0]}
    for name, param in fair.module_.named_parameters():
        torch.testing.assert_close(param.detach().double(), expected[name])
    for name, module in fair.module_.named_modules():  # masked weights stay zero
        if hasattr(module, "weight_mask"):
            assert bool((module.weight[module.weight_mask == 0] == 0).all()), name


def test_tail_average_counts_the_final_iterate_once():
    module = torch.nn.Linear(1, 1, bias=False)
    tail = TailAverage(n_batches=4, tail=0.5)  # averages from batch 3 on
    for value in (1.0, 2.0, 3.0, 4.0):
        with torch.no_grad():
            module.weight.fill_(value)
        tail.batch_end()
        tail.checkpoint(module)  # a dual step after every batch
    tail.finish(module)  # the final iterate (4.0) was just summed: not counted twice
    assert module.weight.item() == pytest.approx((3.0 + 4.0) / 2)


def test_no_tail_average_returns_the_last_iterate(tabular):
    X, y, group = tabular
    recorder = _IterateRecorder()
    fair = make_fair(**CEAG, average_tail=0.0, callbacks=[recorder])
    fair.fit(X, y, sensitive_features=group)
    for name, param in fair.module_.named_parameters():
        assert torch.equal(param.detach().double(), recorder.states[-1][name]), name


def test_replay_buffer_standard_errors_match_numpy():
    buffer = GroupReplayBuffer(3, size=4)
    values = np.array([1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 1.0, 1.0])
    codes = np.array([0, 0, 0, 0, 0, 0, 1, 2])  # group 0 overflows: keeps its last 4
    buffer.push(codes[:2], values[:2])
    buffer.push(codes[2:], values[2:])
    kept = np.array([0.0, 1.0, -1.0, 0.0])
    errors = buffer.standard_errors()
    assert errors[0] == pytest.approx(kept.std(ddof=1) / np.sqrt(len(kept)))
    assert np.isnan(errors[1]) and np.isnan(errors[2])  # one value each: no standard error


def test_noise_margin_steps_on_the_lower_confidence_bound(tabular):
    X, y, group = tabular
    records = []

    class Spy(Callback):  # runs after DualAscent: sees each dual step's inputs and result
        def on_batch_end(self, net, training=False, **kwargs):
            state = dual_state(net)
            if training and net.phase_ == "fine_tune" and state.batches_since_update == 0:
                psi = excess_accuracy_gap(state.replay.means(), state.group_shares)
                records.append((state.multipliers.copy(), psi, state.replay.standard_errors()))

    fair = make_fair(**CEAG, dual_update=3, average_tail=0.0, noise_margin=2.0,
                     callbacks=[Spy()])
    fair.fit(X, y, sensitive_features=group)
    assert fair.noise_margin_ == 2.0 and len(records) == 6  # 3 dual steps in each of 2 epochs
    before = np.zeros(len(fair.groups_))
    for after, psi, error in records:
        bound = psi - 2.0 * np.nan_to_num(error, nan=0.0)
        expected = np.where(np.isnan(psi), before,
                            np.clip(before + fair.dual_lr_ * np.nan_to_num(bound), 0.0,
                                    fair.multiplier_cap))
        np.testing.assert_allclose(after, expected)
        before = after
