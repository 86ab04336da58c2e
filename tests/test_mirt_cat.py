"""Selection and stopping for θ with several dimensions; D = 1 agreement with max_info."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orchestrator.cat import CatController, CatState, PreparedBank, make_selection
from orchestrator.data import Responses
from orchestrator.errors import ConfigError
from orchestrator.sim import replay, subject_rng
from tests._cat_helpers import DIMENSIONS, tagged_bank, true_scores, true_scores_2d, two_dim_bank


def _state(ctl: CatController) -> CatState:
    return ctl.state()


def _criterion(rule_spec, state: CatState) -> np.ndarray:
    rule = make_selection(rule_spec)
    empty = np.empty((state.n_subjects, 0), dtype=np.int64)
    return rule._criterion(state, state.eligible, empty, {})


def _administer(ctl: CatController, x: np.ndarray, n: int, rule: str = "random") -> None:
    """Record ``n`` items picked by ``rule`` (a fresh rule object, not the controller's)."""
    picker = CatController(ctl.bank, selection=rule, rng=7)
    for _ in range(n):
        item = picker.next_items(1, exclude=ctl.administered)[0]
        ctl.record(item, int(x[ctl.bank.index[item]]))


@pytest.mark.parametrize("rule", ["d_optimality", "a_optimality", "kl"])
def test_two_dimensional_rules_score_what_they_claim(rule: str) -> None:
    """Each criterion against its definition, computed the slow way for every item."""
    bank = two_dim_bank(40, seed=1)
    ctl = CatController(bank, selection=rule, rng=0)
    _administer(ctl, true_scores_2d(bank, (0.5, -0.5)), 6)
    state = _state(ctl)
    theta = ctl.theta
    prior_prec = np.linalg.inv(bank.prior_cov)
    done = [bank.index[i] for i in ctl.administered]
    info = bank.model.information(theta[None])[0]  # (N, 2, 2) at the EAP
    p = prior_prec + info[done].sum(axis=0)
    got = _criterion(rule, state)[0]
    for j in np.flatnonzero(state.eligible[0]):  # (kl evaluates eligible items only)
        if rule == "d_optimality":
            want = np.log(np.linalg.det(p + info[j]) / np.linalg.det(p))
        elif rule == "a_optimality":
            want = np.trace(np.linalg.inv(p)) - np.trace(np.linalg.inv(p + info[j]))
        else:  # KL over the whole grid posterior, the integral the rule approximates
            w = ctl.posterior.weights
            hat = bank.model.category_probs(theta[None])[0, j]
            logs = bank.model.log_category_probs(ctl.posterior.points)[:, j]  # (G, K)
            live = hat > 0
            want = float(w @ (hat[live] * (np.log(hat[live]) - logs[:, live])).sum(axis=1))
        tol = 0.03 * abs(want) + 1e-6 if rule == "kl" else 1e-9 * max(1.0, abs(want))
        assert got[j] == pytest.approx(want, abs=tol), j


def test_a_optimality_targets_one_dimension_or_a_composite() -> None:
    bank = two_dim_bank(40, seed=2)
    ctl = CatController(bank, rng=0)
    _administer(ctl, true_scores_2d(bank, (0.0, 1.0)), 5)
    state = _state(ctl)
    done = [bank.index[i] for i in ctl.administered]
    info = bank.model.information(ctl.theta[None])[0]
    p = np.linalg.inv(bank.prior_cov) + info[done].sum(axis=0)
    w = np.array([0.5, 0.5])
    by_dim = _criterion({"rule": "a_optimality", "args": {"dimension": "security"}}, state)[0]
    by_index = _criterion({"rule": "a_optimality", "args": {"dimension": 1}}, state)[0]
    composite = _criterion({"rule": "a_optimality", "args": {"weights": [0.5, 0.5]}}, state)[0]
    np.testing.assert_array_equal(by_dim, by_index)
    for j in range(len(bank)):
        after = np.linalg.inv(p + info[j])
        before = np.linalg.inv(p)
        assert by_dim[j] == pytest.approx(before[1, 1] - after[1, 1], rel=1e-9, abs=1e-12)
        assert composite[j] == pytest.approx(w @ before @ w - w @ after @ w, rel=1e-9, abs=1e-12)
    # a test aimed at security picks the items that load on security
    aimed = CatController(bank, selection={"rule": "a_optimality", "args": {"dimension": 1}})
    picks = aimed.next_items(5)
    assert all(bank.slopes[bank.index[i], 1] > 0.5 for i in picks)


@pytest.mark.parametrize("rule", ["d_optimality", "a_optimality"])
def test_at_one_dimension_d_and_a_optimality_choose_what_max_info_chooses(rule: str) -> None:
    """I/P and I/(P(P+I)) increase with I: the same items as max_info, step after step."""
    bank = tagged_bank(80, seed=4)
    res = replay(
        bank,
        _responses(bank, 25, seed=5),
        {"max_info": make_selection("max_info"), rule: make_selection(rule)},
        max_items=15,
    )
    mi, other = res.strategies
    np.testing.assert_array_equal(mi.items, other.items)
    np.testing.assert_array_equal(mi.theta, other.theta)


def test_max_info_is_d_optimality_in_two_dimensions_and_batches_spread() -> None:
    bank = two_dim_bank(50, seed=3)
    x = true_scores_2d(bank, (1.0, -0.5))
    a = CatController(bank, selection="max_info", rng=0)
    b = CatController(bank, selection="d_optimality", rng=0)
    for _ in range(8):
        (ia,), (ib,) = a.next_items(1), b.next_items(1)
        assert ia == ib
        a.record(ia, int(x[bank.index[ia]]))
        b.record(ib, int(x[bank.index[ib]]))
    # a batch conditions on its own picks: it measures both dimensions, not one twice over
    batch = CatController(bank, selection="d_optimality").next_items(4)
    loads = bank.slopes[[bank.index[i] for i in batch]].argmax(axis=1)
    assert set(loads.tolist()) == {0, 1}


def test_variance_reduction_is_refused_for_two_dimensions() -> None:
    with pytest.raises(ConfigError, match="'variance_reduction' is defined for one-dimensional"):
        CatController(two_dim_bank(10), selection="variance_reduction")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"rule": "a_optimality", "args": {"dimension": "securty"}}, "did you mean 'security'"),
        ({"rule": "a_optimality", "args": {"dimension": 2}}, "index 2 is out of range"),
        ({"rule": "a_optimality", "args": {"weights": [1, 2, 3]}}, "weights has 3 entries"),
    ],
)
def test_bad_targets_are_refused_when_the_bank_is_known(spec, message) -> None:
    with pytest.raises(ConfigError, match=message):
        CatController(two_dim_bank(10), selection=spec)


def test_bad_target_arguments_are_refused_at_once() -> None:
    with pytest.raises(ConfigError, match="give dimension or weights, not both"):
        make_selection({"rule": "a_optimality", "args": {"dimension": 0, "weights": [1, 0]}})
    with pytest.raises(ConfigError, match="weights must not all be 0"):
        make_selection({"rule": "a_optimality", "args": {"weights": [0, 0]}})


def test_se_stopping_on_every_dimension_one_or_a_composite() -> None:
    bank = two_dim_bank(80, seed=5)
    x = true_scores_2d(bank, (0.3, 0.3))
    rules = {
        "all": {"rule": "se", "args": {"se": 0.45}},
        "one": {"rule": "se", "args": {"se": 0.45, "dimension": "security"}},
        "composite": {"rule": "se", "args": {"se": 0.45, "weights": [0.5, 0.5]}},
    }
    ctls = {k: CatController(bank, selection="random", stopping=r, rng=3) for k, r in rules.items()}
    fired: dict[str, int] = {}
    for step in range(1, 60):
        for name, ctl in ctls.items():
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[bank.index[item]]))
            decision = ctl.should_stop()
            se, cov = ctl.se, ctl.covariance
            composite = float(np.sqrt(np.array([0.5, 0.5]) @ cov @ np.array([0.5, 0.5])))
            watched = {"all": se.max(), "one": se[1], "composite": composite}[name]
            assert decision.stop == (watched <= 0.45)
            if decision.stop and name not in fired:
                fired[name] = step
                label = {"all": "largest SE", "one": "SE of security", "composite": "composite SE"}
                assert decision.reason == f"{label[name]} {watched:.3f} ≤ target 0.45"
    # same random items for all three: the composite (an average) is the easiest target,
    # every dimension at once the hardest
    assert fired["composite"] <= fired["one"] <= fired["all"]
    with pytest.raises(ConfigError, match="dimension 'safety' is not one of the bank's"):
        CatController(bank, stopping={"rule": "se", "args": {"dimension": "safety"}})


def test_two_dimensional_controller_round_trips_through_json() -> None:
    bank = two_dim_bank(40, seed=6)
    x = true_scores_2d(bank, (-0.5, 1.0))
    ctl = CatController(bank, selection={"rule": "kl", "args": {"randomesque": 3}}, rng=4)
    for _ in range(7):
        item = ctl.next_items(1)[0]
        ctl.record(item, int(x[bank.index[item]]))
    doc = json.loads(json.dumps(ctl.to_dict(), allow_nan=False))
    post = doc["posterior"]
    assert post["prior_mean"] == [0.0, 0.2] and post["prior_sd"] == [1.0, 1.2]
    assert post["prior_correlation"] == [[1.0, 0.5], [0.5, 1.0]]
    assert post["grid"] == [{"lo": -6.0, "hi": 6.0, "n": 41}] * 2
    assert post["responses"][0]["a"] == bank.slopes[bank.index[doc["administered"][0]]].tolist()
    assert doc["theta"] == ctl.theta[0] and doc["estimate"]["dimensions"] == list(DIMENSIONS)
    assert doc["estimate"]["theta"] == ctl.theta.tolist()
    clone = CatController.from_dict(doc, bank)
    np.testing.assert_array_equal(clone.theta, ctl.theta)
    np.testing.assert_array_equal(clone.covariance, ctl.covariance)
    for _ in range(5):
        a, b = ctl.next_items(1), clone.next_items(1)
        assert a == b
        ctl.record(a[0], int(x[bank.index[a[0]]]))
        clone.record(b[0], int(x[bank.index[b[0]]]))


def _responses(bank, n_subjects: int, seed: int, share: float = 1.0, theta=None):
    r = np.random.default_rng(seed)
    if theta is None:
        theta = (
            r.normal(0, 1, (n_subjects, 1))
            if bank.n_dims == 1
            else r.multivariate_normal(bank.prior_mean, bank.prior_cov, n_subjects)
        )
    x = bank.model.sample(theta, r)
    seen = r.random(x.shape) < share
    triples = [
        (f"s{s}", bank.ids[j], int(x[s, j]))
        for s in range(n_subjects)
        for j in range(len(bank))
        if seen[s, j]
    ]
    return Responses.from_triples(triples).for_bank(bank)


@pytest.mark.parametrize(
    "spec",
    [
        "max_info",
        {"rule": "a_optimality", "args": {"dimension": "utility", "randomesque": 2}},
        {"rule": "kl", "args": {"content": {"tag": "family"}, "cost": "seconds"}},
    ],
    ids=["max_info", "a_optimality", "kl"],
)
def test_two_dimensional_replay_is_the_live_controller_per_subject(spec) -> None:
    bank = two_dim_bank(36, seed=7)
    aligned = _responses(bank, 8, seed=8, share=0.7)
    res = replay(bank, aligned, {"s": make_selection(spec)}, max_items=10, seed=5)
    traj = res.strategies[0]
    seen = np.zeros((8, len(bank)), dtype=bool)
    seen[aligned.subject_idx, aligned.bank_item] = True
    scores = np.full((8, len(bank)), -1)
    scores[aligned.subject_idx, aligned.bank_item] = aligned.score
    for s in range(8):
        ctl = CatController(bank, selection=spec, rng=subject_rng(5, s))
        for j in np.flatnonzero(~seen[s]):
            ctl.mark_unavailable(bank.ids[j])
        for t in range(min(10, int(seen[s].sum()))):
            item = ctl.next_items(1)[0]
            ctl.record(item, int(scores[s, bank.index[item]]))
            assert bank.index[item] == traj.items[s, t]
            np.testing.assert_array_equal(ctl.theta, traj.theta[t + 1, s])
            np.testing.assert_array_equal(ctl.se, traj.se[t + 1, s])


def test_two_dimensional_cat_beats_random_against_the_true_theta() -> None:
    bank = two_dim_bank(120, seed=9, cross=False)
    r = np.random.default_rng(10)
    theta = r.multivariate_normal(bank.prior_mean, bank.prior_cov, 150)
    aligned = _responses(bank, 150, seed=11, theta=theta)
    rules = {
        "d": make_selection("d_optimality"),
        "kl": make_selection("kl"),
        "random": make_selection("random"),
    }
    res = replay(bank, aligned, rules, max_items=20, seed=0, se_target=0.4)

    def rmse(k: int, t: int) -> np.ndarray:
        return np.sqrt(((res.strategies[k].theta[t] - theta) ** 2).mean(axis=0))

    # measured: RMSE (utility, security) at 10 / 20 items
    #   d_optimality (0.49, 0.41) / (0.38, 0.35); kl (0.46, 0.42) / (0.39, 0.34);
    #   random (0.65, 0.66) / (0.53, 0.51)
    for t in (10, 20):
        assert np.all(rmse(0, t) < 0.85 * rmse(2, t)), t
        assert np.all(rmse(1, t) < 0.85 * rmse(2, t)), t
    # SE ≤ 0.4 on both within 20 items: measured 84 % (d), 87 % (kl), 0 % (random)
    reached = {s.name: (s.items_to_se >= 0).mean() for s in res.strategies}
    assert reached["d"] > 0.7 and reached["kl"] > 0.7 and reached["random"] < 0.1


def test_every_rule_but_variance_reduction_runs_on_a_two_dimensional_bank() -> None:
    from orchestrator.cat import selection_rules, stopping_rules

    bank = two_dim_bank(30, seed=12)
    x = true_scores_2d(bank, (0.2, -0.2))
    for name in selection_rules.names():
        if name == "variance_reduction":
            continue
        for stop in stopping_rules.names():
            args = {"max_items": 6} if stop == "max_items" else {}
            if stop == "budget":
                args = {"max_seconds": 1e9}
            if stop == "any_of":
                args = {"rules": ["se", "info_floor"]}
            ctl = CatController(bank, selection=name, stopping={"rule": stop, "args": args}, rng=1)
            picks = ctl.next_items(3, pending=["it000"])
            assert len(set(picks)) == 3 and "it000" not in picks
            for item in picks:
                ctl.record(item, int(x[bank.index[item]]))
            assert ctl.should_stop().stop in (True, False)
    assert PreparedBank.of(bank).n_dims == 2
    # one-dimensional helpers keep their numbers
    one = tagged_bank(20, seed=1)
    np.testing.assert_array_equal(
        CatController(one, rng=0).state().information_at_theta(),
        PreparedBank.of(one).information(np.zeros((1, 1))),
    )
    assert true_scores(one, 0.0).shape == (20,)


@pytest.mark.parametrize("rule", ["d_optimality", "a_optimality", "kl"])
def test_three_dimensional_cat_narrows_every_dimension(rule: str) -> None:
    """D = 3 (the largest a bank may have): one item per dimension in turn, and every
    dimension's SE falls well below its prior SD within 24 items."""
    from orchestrator.bank import ItemBank, Prior

    r = np.random.default_rng(5)
    n = 60
    on = np.arange(n) % 3
    slopes = np.zeros((n, 3))
    slopes[np.arange(n), on] = np.exp(r.normal(0.3, 0.2, n))
    b = r.normal(0.0, 1.0, (n, 1)) + np.sort(r.uniform(-1.0, 1.0, (n, 2)), axis=1)
    bank = ItemBank.from_params(
        "three",
        [f"t{j:02d}" for j in range(n)],
        slopes,
        b,
        dimensions=["u", "s", "c"],
        prior=Prior(correlation=[[1, 0.3, 0.1], [0.3, 1, 0.2], [0.1, 0.2, 1]]),
    )
    x = bank.model.sample(np.array([[0.5, -0.5, 1.0]]), np.random.default_rng(6))[0]
    ctl = CatController(bank, selection=rule, rng=0)
    for _ in range(24):
        (item,) = ctl.next_items(1)
        ctl.record(item, int(x[bank.index[item]]))
    seen = on[[bank.index[i] for i in ctl.administered]]
    assert np.bincount(seen, minlength=3).min() >= 4  # no dimension left out
    assert ctl.se.shape == (3,) and np.all(ctl.se < 0.6)


@pytest.mark.parametrize("lapse", [0.0, 0.2])
def test_kl_weighs_the_posterior_the_grid_holds_lapse_included(lapse: float) -> None:
    """KL's quadrature re-weights its nodes by the posterior density: with a lapse
    rate that density must be the robust one, or KL integrates another posterior."""
    from orchestrator.cat.selection import _posterior_nodes
    from orchestrator.irt.posterior import GridPosterior

    prepared = PreparedBank.of(tagged_bank())
    post = GridPosterior(prepared.model, 1, capacity=8, lapse=lapse)
    a = np.asarray(prepared.bank.a)
    hard, easy = np.argsort(-prepared.bank.b[:, 0])[:6], int(np.argmin(prepared.bank.b[:, 0]))
    for i in hard:  # passes on the hardest items, then a miss on the easiest: a lapse
        post.update(slice(0, 1), np.array([i]), np.array([prepared.bank.n_categories[i] - 1]))
    post.update(slice(0, 1), np.array([easy]), np.array([0]))
    state = CatState.of_posterior(prepared, post, slice(0, 1), np.ones((1, len(a)), dtype=bool))
    nodes, w = _posterior_nodes(state)
    assert (w[0] * nodes[0, :, 0]).sum() == pytest.approx(post.eap[0, 0], abs=0.05)
