"""Tabulated information: its error bound holds, and selection from it is the exact rule's."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.bank import ItemBank
from orchestrator.cat import CatController, make_selection
from orchestrator.cat import selection as selection_module
from orchestrator.cat._table import InformationTable
from orchestrator.cat.fit import simulate_tests
from orchestrator.cat.selection import Bounded, SelectionRule, _information_at
from orchestrator.cat.state import PreparedBank
from orchestrator.irt.ability import subject_log_likelihood
from orchestrator.irt.model import GradedResponseModel
from orchestrator.sim import replay
from tests._cat_helpers import tagged_bank, true_scores
from tests.test_replay import _sparse_responses


def _steep(bank: ItemBank, every: int = 5, factor: float = 12.0) -> ItemBank:
    """The same bank with every ``every``-th slope multiplied (too steep for the table)."""
    a = bank.a.copy()
    a[::every] *= factor
    costs = [it.cost for it in bank.spec.items]
    tags = [dict(it.tags) for it in bank.spec.items]
    return ItemBank.from_params("steep", bank.ids, a, bank.b, tags=tags, costs=costs)


@pytest.mark.parametrize("steep", [False, True])
def test_interpolation_error_stays_within_the_measured_bound(steep: bool) -> None:
    bank = tagged_bank(60, seed=4)
    bank = _steep(bank) if steep else bank
    table = InformationTable(bank.model, -6.0, 6.0, max_bytes=60 * 4 * 200)  # a coarse grid
    theta = np.linspace(-6.0, 6.0, 20 * len(table.theta))  # 20 points per interval
    error = np.abs(table.interpolate(theta) - bank.model.information(theta[:, None]))
    bounded = np.setdiff1d(np.arange(len(bank)), table.steep)
    assert error[:, bounded].max() <= table.eps
    assert error[:, bounded].max() > table.eps / 10  # the bound is not vacuous
    assert (table.steep.size > 0) == steep


@pytest.mark.parametrize("steep", [False, True])
def test_shortlist_ceiling_bounds_every_item_left_off(
    monkeypatch: pytest.MonkeyPatch, steep: bool
) -> None:
    monkeypatch.setattr("orchestrator.cat._table.SHORTLIST", 7)
    bank = tagged_bank(60, seed=4)
    bank = _steep(bank) if steep else bank
    table = InformationTable(bank.model, -6.0, 6.0, max_bytes=60 * 4 * 200)
    theta = np.linspace(-6.0, 6.0, 20 * len(table.theta))
    cols, est, ceiling = table.shortlist(theta)
    full = table.interpolate(theta)
    assert cols.shape == (len(theta), 7)
    rows = np.arange(len(theta))[:, None]
    np.testing.assert_array_equal(est, full[rows, cols])  # the same bits as interpolate
    assert not np.isin(cols, table.steep).any()  # unbounded items are never listed
    left_off = np.ones(full.shape, dtype=bool)
    left_off[rows, cols] = False
    left_off[:, table.steep] = False
    assert (np.where(left_off, full, -np.inf).max(axis=1) <= ceiling).all()
    assert (est.max(axis=1) > ceiling).mean() > 0.9  # the list can decide: a useful ceiling


@pytest.mark.parametrize("steep", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_one_test_shortlist_and_candidates_are_a_row_of_many(
    monkeypatch: pytest.MonkeyPatch, steep: bool, n: int
) -> None:
    """A live step reads its interval as views and proves its candidates on vectors:
    the same bits and candidates as the same test among others."""
    monkeypatch.setattr("orchestrator.cat._table.SHORTLIST", 12)
    monkeypatch.setattr("orchestrator.cat.state.TABLE_MIN_ITEMS", 1)
    bank = tagged_bank(60, seed=4)
    prepared = PreparedBank.of(_steep(bank) if steep else bank)
    table = prepared.information_table()
    assert table is not None
    rng = np.random.default_rng(9)
    decided = 0
    for theta in rng.uniform(-5.5, 5.5, 120):
        two = np.array([[theta], [theta]])  # the same test twice: decided alike
        mask = np.repeat(rng.random((1, len(bank))) < 0.8, 2, axis=0)
        one_list, many_list = table.shortlist(two[:1]), table.shortlist(two)
        for got, want in zip(one_list, many_list, strict=True):
            np.testing.assert_array_equal(got, want[:1])
        one = _information_at(prepared, two[:1])
        many = _information_at(prepared, two)
        assert isinstance(one, Bounded) and isinstance(many, Bounded)
        found = SelectionRule._shortlist_candidates(one, one_list, mask[:1], n)
        both = SelectionRule._shortlist_candidates(many, many_list, mask, n)
        assert (found is None) == (both is None)
        if found is None:
            continue
        decided += 1
        rows, cols = both
        np.testing.assert_array_equal(found[0], rows[rows == 0])
        np.testing.assert_array_equal(found[1], cols[rows == 0])
    assert decided >= 15  # the list decides often enough for the comparison to mean something


def _paths(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the picks proven from a shortlist and those that fell back to all items."""
    seen = {"proven": 0, "fallback": 0}
    short, lazy = SelectionRule._shortlist_candidates, selection_module._lazy_candidates

    def counted(found: object) -> object:
        seen["proven" if found is not None else "fallback"] += 1
        return found

    monkeypatch.setattr(
        SelectionRule, "_shortlist_candidates", staticmethod(lambda *a: counted(short(*a)))
    )
    monkeypatch.setattr(selection_module, "_lazy_candidates", lambda *a: counted(lazy(*a)))
    return seen


def _both(monkeypatch: pytest.MonkeyPatch, make: object) -> tuple[object, object]:
    """``make()`` with every bank tabulated, then with none (fresh banks each time)."""
    monkeypatch.setattr("orchestrator.cat.state.TABLE_MIN_ITEMS", 1)
    tabulated = make()  # type: ignore[operator]
    monkeypatch.setattr("orchestrator.cat.state.TABLE_MIN_ITEMS", 10**9)
    return tabulated, make()  # type: ignore[operator]


@pytest.mark.parametrize(
    "spec",
    [
        "max_info",
        {"rule": "max_info", "args": {"randomesque": 3, "cost": "seconds"}},
        "variance_reduction",
        {"rule": "variance_reduction", "args": {"content": {"tag": "family"}, "cost": "tokens"}},
    ],
    ids=["max_info", "randomesque+cost", "variance_reduction", "vr+content+cost"],
)
@pytest.mark.parametrize("steep", [False, True])
@pytest.mark.parametrize("shortlist", [256, 4])
def test_replay_from_the_table_chooses_what_exact_information_chooses(
    monkeypatch: pytest.MonkeyPatch, spec: object, steep: bool, shortlist: int
) -> None:
    monkeypatch.setattr("orchestrator.cat._table.SHORTLIST", shortlist)
    paths = _paths(monkeypatch)

    def run() -> object:
        bank = tagged_bank(45, seed=6)
        bank = _steep(bank) if steep else bank
        _, _, _, aligned = _sparse_responses(bank, 30, 0.7, seed=1)
        return replay(bank, aligned, {"s": make_selection(spec)}, seed=3).strategies[0]

    tabulated, exact = _both(monkeypatch, run)
    np.testing.assert_array_equal(tabulated.items, exact.items)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(tabulated.theta, exact.theta)  # type: ignore[attr-defined]
    if spec == "max_info" and shortlist == 256:  # a replay step is proven for all or none
        assert paths["proven"] > 0


@pytest.mark.parametrize("selection", ["max_info", "variance_reduction"])
@pytest.mark.parametrize("shortlist", [256, 3])
def test_live_batches_from_the_table_are_the_exact_batches(
    monkeypatch: pytest.MonkeyPatch, selection: str, shortlist: int
) -> None:
    monkeypatch.setattr("orchestrator.cat._table.SHORTLIST", shortlist)
    paths = _paths(monkeypatch)

    def run() -> list[list[str]]:
        bank = tagged_bank(60, seed=2)
        x = true_scores(bank, 0.8, seed=5)
        ctl = CatController(bank, selection=selection, rng=7)
        batches = []
        for _ in range(6):
            batch = ctl.next_items(4)
            batches.append(batch)
            for item in batch[:2]:  # two come back, two stay pending
                ctl.record(item, int(x[bank.index[item]]))
            batches.append(ctl.next_items(3, pending=batch[2:]))
            for item in batch[2:]:
                ctl.record(item, int(x[bank.index[item]]))
        return batches

    tabulated, exact = _both(monkeypatch, run)
    assert tabulated == exact
    assert paths["proven"] > 0  # single picks (max_info) and batch picks (lazy greedy)
    if shortlist == 3 and selection == "max_info":  # (a batch's later picks use groups)
        assert paths["fallback"] > 0  # a list too short to decide: all items, same picks


def test_probed_tests_pick_apart_and_the_others_keep_the_bounded_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A replay with probes (a sandbagger's failures trigger them) picks what the exact
    rule picks, and a probe due in one test does not make the others evaluate every item."""
    pairs: list[int] = []
    bounded = selection_module.Bounded

    class Counted(bounded):  # type: ignore[misc,valid-type]
        def __init__(self, estimate, eps, unbounded, exact, *args, **kwargs):  # type: ignore[no-untyped-def]
            def counted(rows, cols):  # type: ignore[no-untyped-def]
                pairs.append(len(rows))
                return exact(rows, cols)

            super().__init__(estimate, eps, unbounded, counted, *args, **kwargs)

    monkeypatch.setattr(selection_module, "Bounded", Counted)
    due: list[int] = []
    targets = selection_module._probe_targets

    def probe_targets(*args):  # type: ignore[no-untyped-def]
        rows, theta = targets(*args)
        due.append(rows.size)
        return rows, theta

    monkeypatch.setattr(selection_module, "_probe_targets", probe_targets)
    theta = np.random.default_rng(5).normal(0.5, 0.5, 40)

    def sandbag(rows, items, positions, honest):  # type: ignore[no-untyped-def]
        return np.where(positions % 3 == 0, 0, honest)  # every third item failed on purpose

    def run() -> object:
        bank = tagged_bank(60, seed=3)
        rule = make_selection({"rule": "max_info", "args": {"probe": 2}})
        return simulate_tests(bank, rule, theta, 15, modify=sandbag, seed=2)

    tabulated, exact = _both(monkeypatch, run)
    np.testing.assert_array_equal(tabulated.items, exact.items)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(tabulated.theta_hat, exact.theta_hat)  # type: ignore[attr-defined]
    assert 0 < max(due) < len(theta)  # some tests probed while others did not, in one step
    assert pairs and max(pairs) < len(theta) * 60 // 4  # never every item of every test


def test_blockwise_log_likelihood_is_the_sum_of_the_observations(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of items and chunks of observations (made tiny here) add up to the plain sum."""
    r = np.random.default_rng(0)
    a = np.exp(r.normal(0, 0.3, 40))
    b = np.sort(r.normal(0, 1, (40, 3)), axis=1)
    b[::3, 1:] = np.inf  # some items with K = 2
    model = GradedResponseModel.from_difficulty(a, b)
    grid = np.linspace(-4, 4, 31)
    subj, item = r.integers(0, 9, 300), r.integers(0, 40, 300)
    score = r.integers(0, model.n_categories[item])
    logp = model.log_category_probs(grid[:, None])  # (G, N, K)
    expected = np.zeros((9, len(grid)))
    np.add.at(expected, subj, logp[:, item, score].T)
    monkeypatch.setattr("orchestrator.irt.ability._BLOCK", 31 * 5 * 3)  # 3 items, 3 rows
    got = subject_log_likelihood(a, b, subj, item, score, 9, grid, model=model)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    assert subject_log_likelihood(a, b, subj[:0], item[:0], score[:0], 9, grid).shape == (9, 31)


def _small_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups as a 600-item bank needs them to have many (bins of 40 items: 4, 4, 8, 24)."""
    monkeypatch.setattr("orchestrator.cat._table.GROUP_BIN", 40)
    monkeypatch.setattr("orchestrator.cat._table.GROUP_STARTS", (0, 4, 8, 16))


def _opened(cache: dict[str, object]) -> int:
    """Groups a batch has opened (their bound set to −inf)."""
    if "vr_groups" not in cache:
        return 0
    return int(np.isneginf(cache["vr_groups"][1]).sum())  # type: ignore[index]


def _count_scored(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the items a batch scores exactly, its groups opened, and all-item bounds."""
    calls = {"scored": 0, "opened": 0, "all_items": 0, "picks": 0}
    grid, upper = selection_module._store_information, selection_module._variance_reduction_upper
    open_groups = selection_module._open_groups

    def counted_grid(cache, bank, points, cols):  # type: ignore[no-untyped-def]
        seen = cache.get("vr_seen")
        before = 0 if seen is None else seen[2]
        out = grid(cache, bank, points, cols)
        calls["scored"] += cache["vr_seen"][2] - before
        return out

    def counted_upper(*args):  # type: ignore[no-untyped-def]
        calls["all_items"] += 1
        return upper(*args)

    def counted_open(*args):  # type: ignore[no-untyped-def]
        calls["picks"] += 1
        cache = args[-1]
        before = _opened(cache)
        out = open_groups(*args)
        calls["opened"] += _opened(cache) - before
        return out

    monkeypatch.setattr(selection_module, "_store_information", counted_grid)
    monkeypatch.setattr(selection_module, "_variance_reduction_upper", counted_upper)
    monkeypatch.setattr(selection_module, "_open_groups", counted_open)
    return calls


@pytest.mark.parametrize(
    "selection",
    ["max_info", "variance_reduction", {"rule": "max_info", "args": {"randomesque": 3}}],
    ids=["max_info", "variance_reduction", "randomesque"],
)
@pytest.mark.parametrize("steep", [False, True])
def test_early_batches_from_the_groups_are_the_exact_batches(
    monkeypatch: pytest.MonkeyPatch, selection: object, steep: bool
) -> None:
    """Batches after 0 to 10 steps (a wide posterior, where a batch's picks move J the
    most) pick what the exact rule picks, scoring a small part of the bank exactly and
    never bounding all items (items too steep for the table always scored)."""
    _small_groups(monkeypatch)
    calls = _count_scored(monkeypatch)

    def run() -> list[list[str]]:
        bank = tagged_bank(600, seed=4)
        bank = _steep(bank, every=50) if steep else bank
        x = true_scores(bank, -0.4, seed=2)
        ctl = CatController(bank, selection=selection, rng=1)
        batches = []
        for _ in range(11):
            batches.append(ctl.next_items(8))
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[bank.index[item]]))
        return batches

    tabulated, exact = _both(monkeypatch, run)  # (only the tabulated run opens groups)
    assert tabulated == exact
    assert calls["all_items"] == 0
    assert calls["picks"] >= 11 * 7
    assert 0 < calls["scored"] < 11 * 600 // 4  # a few groups' members per batch


@pytest.mark.parametrize(
    "selection",
    ["max_info", "variance_reduction", {"rule": "max_info", "args": {"randomesque": 3}}],
    ids=["max_info", "variance_reduction", "randomesque"],
)
def test_late_batches_settled_from_scores_at_hand_are_the_exact_batches(
    monkeypatch: pytest.MonkeyPatch, selection: object
) -> None:
    """Later in a test (narrow posterior, the best items administered) a batch's later
    picks are mostly settled by re-scoring the items its first picks scored, opening no
    group: the picks stay the exact rule's."""
    _small_groups(monkeypatch)
    calls = _count_scored(monkeypatch)
    settled = {"n": 0}
    open_groups = selection_module._open_groups

    def counted_open(*args):  # type: ignore[no-untyped-def]
        cache = args[-1]
        before = _opened(cache) if "vr_groups" in cache else -1
        out = open_groups(*args)
        settled["n"] += _opened(cache) == before
        return out

    monkeypatch.setattr(selection_module, "_open_groups", counted_open)

    def run() -> list[list[str]]:
        bank = tagged_bank(600, seed=4)
        x = true_scores(bank, 0.6, seed=2)
        ctl = CatController(bank, selection=selection, rng=1)
        batches = []
        for step in range(40):
            if step >= 25 and step % 3 == 0:
                batches.append(ctl.next_items(8))
            item = ctl.next_items(1)[0]
            ctl.record(item, int(x[bank.index[item]]))
        return batches

    tabulated, exact = _both(monkeypatch, run)
    assert tabulated == exact
    assert calls["all_items"] == 0
    assert settled["n"] > 5 * 3  # most later picks opened no group


@pytest.mark.parametrize("steep", [False, True])
def test_group_envelopes_bound_every_member_and_groups_cover_the_bank(
    monkeypatch: pytest.MonkeyPatch, steep: bool
) -> None:
    """Every bounded item is in exactly one group, and a member's exact information
    anywhere on an interval is at most its group's larger envelope value there plus
    eps: the bound a batch pick trusts to leave a group closed."""
    _small_groups(monkeypatch)
    bank = tagged_bank(200, seed=4)
    bank = _steep(bank) if steep else bank
    table = InformationTable(bank.model, -6.0, 6.0, max_bytes=200 * 4 * 200)
    members, starts, envelope = table.groups()
    bounded = np.setdiff1d(np.arange(len(bank)), table.steep)
    np.testing.assert_array_equal(np.sort(members), bounded)
    assert len(starts) - 1 == envelope.shape[1] > 5
    group = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    theta = np.linspace(-6.0, 6.0, 20 * len(table.theta))
    i, _ = table.position(theta)
    exact = bank.model.information(theta[:, None])[:, members]  # (points, M)
    bound = np.maximum(envelope[i], envelope[i + 1])[:, group] + table.eps
    assert (exact <= bound).all()
    # small groups of high peaks: the bound is close for the items that matter
    best = exact.max(axis=0) >= np.quantile(exact.max(axis=0), 0.9)
    gap = (bound - exact)[:, best].min(axis=0)
    assert np.median(gap) < 0.2 * np.median(exact.max(axis=0)[best])


@pytest.mark.parametrize("rest", [0.3, 0.6])
def test_scores_at_hand_settle_a_pick_only_when_every_other_bound_is_below(
    rest: float,
) -> None:
    """Items 0, 1 are at hand (exact 0.5, 0.4); item 2 is not (bound 0.7, exact 0.65).
    With the others bounded by 0.3 the pick is settled from items 0, 1; with 0.6 it is
    not, and the list finds item 2."""
    exact = np.array([0.5, 0.4, 0.65, 0.05])
    scores = Bounded(
        np.array([[0.5, 0.4, 0.7, 0.1]]),
        0.0,
        np.empty(0, dtype=np.int64),
        lambda rows, cols: exact[cols],
        upper_only=True,
        shortlist=lambda: (np.array([[2, 3]]), np.array([[0.7, 0.1]]), np.array([0.05])),
        known=lambda eligible: (np.array([0, 1]), exact[:2], rest),
    )
    found = selection_module._lazy_candidates(scores, np.ones((1, 4), dtype=bool), 1)
    assert found is not None
    items = found[1][np.argmax(found[2])]
    assert items == (0 if rest == 0.3 else 2)


@pytest.mark.parametrize("opened", [4, 64])
@pytest.mark.parametrize("n_categories", [2, 4])
def test_first_batches_at_the_prior_are_the_exact_batches(
    monkeypatch: pytest.MonkeyPatch, opened: int, n_categories: int
) -> None:
    """The first batch of a test (no response yet: the prior's wide posterior, where many
    groups stay open and a pick opens groups over several rounds) picks what the exact
    rule picks: with items in flight and excluded too, and with few items opened a round
    (many rounds, their scores kept within a pick) or many."""
    _small_groups(monkeypatch)
    monkeypatch.setattr(selection_module, "_OPEN", opened)
    rounds = {"most": 0, "now": 0}
    store, open_groups = selection_module._store_information, selection_module._open_groups

    def counted_store(*args):  # type: ignore[no-untyped-def]
        rounds["now"] += 1
        return store(*args)

    def counted_open(*args):  # type: ignore[no-untyped-def]
        rounds["now"] = 0
        out = open_groups(*args)
        rounds["most"] = max(rounds["most"], rounds["now"])
        return out

    monkeypatch.setattr(selection_module, "_store_information", counted_store)
    monkeypatch.setattr(selection_module, "_open_groups", counted_open)

    def run() -> list[list[str]]:
        batches = []
        for seed in range(3):
            r = np.random.default_rng(seed)
            n = 600
            a = np.exp(r.normal(0.0, 0.3, n))
            b = r.normal(0.0, 1.0, (n, 1)) + np.sort(r.uniform(-1, 1, (n, n_categories - 1)), 1)
            bank = ItemBank.from_params(f"prior{seed}", [f"i{i}" for i in range(n)], a, b)
            for selection in ("max_info", {"rule": "max_info", "args": {"randomesque": 2}}):
                ctl = CatController(bank, selection=selection, rng=seed)
                batches.append(ctl.next_items(8))
                batches.append(ctl.next_items(6, exclude=batches[-1][:2], pending=["i7"]))
        return batches

    tabulated, exact = _both(monkeypatch, run)
    assert tabulated == exact
    assert rounds["most"] >= (3 if opened == 4 else 1)  # (several rounds in one pick)
