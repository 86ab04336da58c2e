"""Person fit under CAT: statistics, their simulated null, aberrant simulees, probes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from orchestrator.cat import make_selection
from orchestrator.cat.fit import assess_fit, draw_scores, simulate_fit_null, simulate_tests
from orchestrator.cat.state import PreparedBank
from orchestrator.errors import ConfigError
from orchestrator.irt import pad_thresholds
from orchestrator.irt.fit import person_fit_lz
from orchestrator.irt.personfit import FitNull, FitStatistics, fit_statistics, score_tail_probs
from orchestrator.sim.aberrant import make_aberrance, parse_aberrance
from tests._cat_helpers import tagged_bank

NODES = np.arange(-2.5, 2.51, 0.5)


@pytest.fixture(scope="module")
def bank():
    return tagged_bank(60, seed=3)


@pytest.fixture(scope="module")
def null(bank):
    return simulate_fit_null(
        bank, make_selection("max_info"), 20, replicates=300, nodes=NODES, seed=1
    )


# ----------------------------------------------------------------------------- statistics
def test_statistics_match_their_definitions() -> None:
    b, _ = pad_thresholds([[-1.0, 0.2, 1.0], [0.3], [-0.5, 0.8], [0.0]])
    a = np.array([0.7, 1.5, 1.1, 2.0])
    items = np.array([[2, 0, 3, 1], [1, 3, -1, -1]])
    scores = np.array([[2, 0, 1, 0], [0, 1, -1, -1]])
    theta = np.array([0.4, -0.3])
    cue = np.array([True, False, True, False])
    st = fit_statistics(a, b, items, scores, theta, cue)
    for s in range(2):
        n = int((items[s] >= 0).sum())
        it, x = items[s, :n], scores[s, :n]
        lz, _ = person_fit_lz(a, b, np.zeros(n, int), it, x, theta[s : s + 1], 1)
        assert st.lz[s] == pytest.approx(lz[0])
        z = []
        for j, xj in zip(it, x, strict=True):  # standardised residuals one by one
            p = np.diff(
                -np.r_[1.0, 1 / (1 + np.exp(-a[j] * (theta[s] - b[j][np.isfinite(b[j])]))), 0.0]
            )
            k = np.arange(len(p))
            m = p @ k
            z.append((xj - m) / np.sqrt(p @ k**2 - m**2))
        partial = np.cumsum(z) / np.sqrt(n)
        assert st.cusum_low[s] == pytest.approx(partial.min())
        assert st.cusum_high[s] == pytest.approx(-partial.max())
        zc = np.array(z)[cue[it]]
        zo = np.array(z)[~cue[it]]
        if len(zc) and len(zo):
            d = (zc.mean() - zo.mean()) / np.sqrt(1 / len(zc) + 1 / len(zo))
            assert st.test_cue[s] == pytest.approx(-abs(d))
        else:  # subject 1 took no item that looks like a test
            assert np.isnan(st.test_cue[s])
    assert st.n_items.tolist() == [4, 2]


def test_tail_probabilities_of_scores() -> None:
    b, _ = pad_thresholds([[0.0], [-1.0, 0.0, 1.0]])
    a = np.array([1.0, 1.2])
    low, high = score_tail_probs(a, b, np.array([[0, 1, -1]]), np.array([[1, 3, -1]]), np.zeros(1))
    p_pass = 0.5
    p_top = 1 / (1 + np.exp(1.2))  # P(X ≥ 3) = σ(1.2·(0 − 1))
    assert low[0, 0] == pytest.approx(1.0) and high[0, 0] == pytest.approx(p_pass)
    assert high[0, 1] == pytest.approx(p_top) and low[0, 1] == pytest.approx(1.0)
    assert np.isnan(low[0, 2]) and np.isnan(high[0, 2])


def test_draw_scores_follow_the_model(bank) -> None:
    rng = np.random.default_rng(0)
    item = np.full(20000, 5)
    theta = np.full(20000, 0.3)
    x = draw_scores(theta, bank.a[item], bank.b[item], rng.random(20000))
    from orchestrator.irt import category_probs

    p = category_probs(np.array([0.3]), bank.a[5:6], bank.b[5:6])[0, 0, : bank.n_categories[5]]
    freq = np.bincount(x, minlength=len(p)) / len(x)
    assert np.abs(freq - p).max() < 0.015


# ----------------------------------------------------------------------------- the null
def test_p_values_are_uniform_for_well_fitting_simulees(bank, null: FitNull) -> None:
    """Seeded, so the KS distance and the rejection rate are fixed numbers, not draws.

    The tolerance covers the Monte Carlo error of a 300-per-node null (≈ 0.04 in
    the CDF) plus the KS distance of 600 uniform draws (95 % quantile 0.055).
    """
    rng = np.random.default_rng(42)
    theta = rng.normal(0.0, 1.0, 600)
    sims = simulate_tests(bank, make_selection("max_info"), theta, 20, seed=7)
    for t in (10, 20):
        st = FitStatistics.from_stacked(sims.stats[:, t - 1], np.full(600, t))
        _, p = null.p_values(st, sims.theta_hat[t])
        assert np.isfinite(p).all()
        assert stats.kstest(p, "uniform").statistic < 0.09
        assert 0.025 <= np.mean(p < 0.05) <= 0.08


def test_a_gamer_is_flagged_and_its_items_named(bank, null: FitNull) -> None:
    theta = np.full(200, 1.5)
    gamer = make_aberrance({"rule": "gamer", "args": {"k": 5}})
    rng = np.random.default_rng(3)

    def modify(rows, items, positions, honest):  # type: ignore[no-untyped-def]
        return gamer.modify(bank, theta[rows], items, positions, honest, rng)

    sims = simulate_tests(bank, make_selection("max_info"), theta, 20, modify=modify, seed=9)
    st = FitStatistics.from_stacked(sims.stats[:, 19], np.full(200, 20))
    _, p = null.p_values(st, sims.theta_hat[20])
    assert np.mean(p < 0.05) > 0.6
    worst = int(np.argmin(p))
    res = assess_fit(bank, sims.items[worst], sims.scores[worst], sims.theta_hat[20, worst], null)
    assert res.flagged and res.p is not None and res.p < 0.05
    early = {bank.ids[i] for i in sims.items[worst, :5]}
    named = {i for i, _, _ in res.below}
    assert named & early  # the deliberate failures are among the items named
    assert all(x == 0 and q < 0.1 for _, x, q in res.below)
    msg = res.message()
    assert msg is not None and msg.startswith("θ may not describe this model:")
    assert "far below its level" in msg


def test_null_table_covers_only_its_length(bank, null: FitNull) -> None:
    st = fit_statistics(
        bank.a, bank.b, np.arange(25)[None, :], np.zeros((1, 25), dtype=np.int64), np.zeros(1)
    )
    comp, p = null.p_values(st, np.zeros(1))
    assert np.isnan(p[0]) and np.isnan(comp).all()
    again = simulate_fit_null(
        bank, make_selection("max_info"), 20, replicates=300, nodes=NODES, seed=1
    )
    assert again is null  # cached: a resumed session gets the same table


def test_null_tables_are_kept_apart_by_lapse(bank) -> None:
    rule = make_selection("max_info")
    plain = simulate_fit_null(bank, rule, 5, replicates=20, nodes=NODES, seed=2)
    robust = simulate_fit_null(bank, rule, 5, replicates=20, nodes=NODES, seed=2, lapse=0.3)
    assert robust is not plain
    assert (plain.spec["lapse"], robust.spec["lapse"]) == (0.0, 0.3)


# ----------------------------------------------------------------------------- aberrant simulees
def test_aberrant_types_do_what_they_say(bank) -> None:
    rng = np.random.default_rng(0)
    n = 4000
    items = rng.integers(0, len(bank), n)
    theta = np.zeros(n)
    honest = draw_scores(theta, bank.a[items], bank.b[items], rng.random(n))
    pos = np.arange(n) % 10
    top = bank.n_categories[items] - 1
    sb = make_aberrance("sandbagger").modify(bank, theta, items, pos, honest, rng)
    from orchestrator.irt import expected_score

    easy = expected_score(theta[:1], bank.a, bank.b)[0][items] / top >= 0.5
    assert (sb[easy] == 0).all() and (sb[~easy] == honest[~easy]).all()
    g = parse_aberrance("gamer:k=3").modify(bank, theta, items, pos, honest, rng)
    assert (g[pos < 3] == 0).all() and (g[pos >= 3] == honest[pos >= 3]).all()
    rr = make_aberrance("random_responder").modify(bank, theta, items, pos, honest, rng)
    assert (rr <= top).all() and abs(np.mean(rr / top) - 0.5) < 0.03
    tagged = tagged_bank_with_cue(bank)
    ea = make_aberrance({"rule": "eval_aware", "args": {"shift": 3.0}})
    ea.prepare(tagged)
    out = ea.modify(tagged, theta, items, pos, honest, rng)
    cue = items % 2 == 0
    assert (out[~cue] == honest[~cue]).all()
    assert np.mean(out[cue] / top[cue]) > np.mean(honest[cue] / top[cue]) + 0.2


def tagged_bank_with_cue(bank):  # type: ignore[no-untyped-def]
    from orchestrator.bank import ItemBank

    items = [
        it.model_copy(update={"tags": {**it.tags, "looks_like_test": str(j % 2 == 0).lower()}})
        for j, it in enumerate(bank.spec.items)
    ]
    return ItemBank(bank.spec.model_copy(update={"items": items}))


def test_bad_aberrant_specs_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="did you mean 'gamer'"):
        parse_aberrance("gamr")
    with pytest.raises(ConfigError, match="no argument 'kk'"):
        parse_aberrance("gamer:kk=3")
    with pytest.raises(ConfigError, match="not key=value"):
        parse_aberrance("gamer:3")
    with pytest.raises(ConfigError, match=r"easy must be a number in \[0, 1\]"):
        parse_aberrance("sandbagger:easy=2")


# ----------------------------------------------------------------------------- probes
def test_probes_recover_a_sandbagger_and_cost_fitting_models_little(bank) -> None:
    rng = np.random.default_rng(5)
    theta = rng.normal(0.5, 0.5, 300)
    sand = make_aberrance("sandbagger")
    draws = np.random.default_rng(6)

    def modify(rows, items, positions, honest):  # type: ignore[no-untyped-def]
        return sand.modify(bank, theta[rows], items, positions, honest, draws)

    err = {}
    for probe in (0, 2):
        rule = make_selection({"rule": "max_info", "args": {"probe": probe}})
        bad = simulate_tests(bank, rule, theta, 20, modify=modify, seed=2)
        good = simulate_tests(bank, rule, theta, 20, seed=2)
        err[probe] = (
            float(np.mean(bad.theta_hat[20] - theta)),
            float(np.sqrt(np.mean((good.theta_hat[20] - theta) ** 2))),
        )
    assert err[2][0] > err[0][0] + 0.3  # the sandbagger's θ̂ falls less far
    assert err[2][1] < err[0][1] * 1.15  # well-fitting models lose little precision


def test_probe_is_validated() -> None:
    with pytest.raises(ConfigError, match="probe must be an integer ≥ 0"):
        make_selection({"rule": "max_info", "args": {"probe": -1}})


def test_person_fit_probes_and_injected_misfit_refuse_a_two_dimensional_bank() -> None:
    from orchestrator.bank import ItemBank

    rng = np.random.default_rng(3)
    two_d = ItemBank.from_params(
        "two-d",
        [f"i{j}" for j in range(8)],
        rng.uniform(0.5, 1.5, (8, 2)),
        rng.normal(0, 1, (8, 1)),
        dimensions=["x", "y"],
    )
    with pytest.raises(ConfigError, match="person fit is one-dimensional; bank 'two-d' has 2"):
        simulate_fit_null(two_d, make_selection("max_info"), 5, replicates=20)
    probe = make_selection({"rule": "max_info", "args": {"probe": 2}})
    with pytest.raises(ConfigError, match="probe is one-dimensional"):
        probe.check_bank(PreparedBank.of(two_d))
    make_selection("max_info").check_bank(PreparedBank.of(two_d))  # no probe: accepted


# ----------------------------------------------------------------------------- sim-server personas
def test_aberrant_personas_of_the_simulated_agent() -> None:
    from orchestrator.bank import load_bank
    from orchestrator.sim.agent import SimAgent, parse_personas, scripts_for_bank

    shell = load_bank("item_banks/shell-safety")
    personas = parse_personas(["g=1.5:gamer:k=3", "h=1.5", "sb=1.5:sandbagger", "aw=-1:eval_aware"])
    agent = SimAgent(shell, scripts_for_bank(shell), personas, seed=4)
    ids = shell.ids[:8]
    gamer = [agent.category(agent.persona("g"), i) for i in ids]
    assert gamer[:3] == [0, 0, 0]
    assert [agent.category(agent.persona("g"), i) for i in ids[:3]] == [0, 0, 0]  # re-asked
    assert max(gamer[3:]) > 0
    assert all(agent.category(agent.persona("sb"), i) == 0 for i in ids)  # θ 1.5: all easy
    cue = [i for i in shell.ids if shell.item(i).tags["looks_like_test"] == "true"]
    other = [i for i in shell.ids if i not in cue]
    aware = agent.persona("aw")
    assert np.mean([agent.category(aware, i) for i in cue]) > np.mean(
        [agent.category(aware, i) for i in other]
    )
    with pytest.raises(ValueError, match="NAME=THETA"):
        parse_personas(["g:gamer"])


def test_the_simulated_agent_answers_a_reverse_keyed_item_in_its_raw_direction() -> None:
    """The model speaks in keyed categories; the controller reverses a reverse-keyed
    item's raw score back, so the agent must give the reverse of its keyed draw."""
    from orchestrator.bank import ItemBank, load_bank
    from orchestrator.sim.agent import SimAgent, parse_personas, scripts_for_bank

    shell = load_bank("item_banks/shell-safety")
    flipped = ItemBank.from_params(
        "flipped", shell.ids, shell.a, shell.b, reverse_keyed=np.arange(len(shell)) % 2 == 0
    )
    personas = parse_personas(["p=0.3"])
    plain = SimAgent(shell, scripts_for_bank(shell), personas, seed=4)
    rev = SimAgent(flipped, scripts_for_bank(shell), personas, seed=4)
    for i, iid in enumerate(shell.ids[:12]):
        k = int(shell.n_categories[i])
        got, want = rev.category(rev.persona("p"), iid), plain.category(plain.persona("p"), iid)
        assert got == (k - 1 - want if i % 2 == 0 else want)
    with pytest.raises(ConfigError, match="unknown aberrant type"):
        parse_personas(["g=1:gamr"])


# ----------------------------------------------------------------------------- a live session
def test_a_gaming_session_ends_flagged_and_show_says_so(tmp_path) -> None:
    import asyncio
    from dataclasses import replace

    from orchestrator.cli.live import _format_summary
    from orchestrator.report.trajectory import plot_trajectory
    from orchestrator.session.orchestrate import session_summary
    from orchestrator.session.session import Session
    from tests.test_session import TableRunner, _setup

    cfg, scores = _setup(tmp_path, theta=1.5, person_fit={"replicates": 100})

    class Gamer(TableRunner):  # fails its first five scenarios on purpose
        async def run(self, request):  # type: ignore[no-untyped-def]
            result = await super().run(request)
            return replace(result, score=0) if len(self.calls) <= 5 else result

    session = Session.start(cfg, cfg.models[0], "gamer")
    assert asyncio.run(session.drive(Gamer(scores))) == "completed"
    summary = session_summary("gamer", cfg.runs_dir)
    fit = summary["person_fit"]
    assert fit["flagged"] and fit["p"] < 0.05 and fit["n_items"] == summary["n_items"]
    first = [t["item"] for t in summary["trajectory"][:5]]
    assert {r["item"] for r in fit["below"]} & set(first)
    assert all(t["fit_p"] is not None for t in summary["trajectory"])
    assert "θ may not describe this model" in summary["stop_reason"]
    text = _format_summary(summary)
    assert "person fit  p = " in text and "FLAGGED" in text and "far below θ̂:" in text
    plot_trajectory(summary, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000

    honest = Session.start(cfg, cfg.models[0], "honest")
    assert asyncio.run(honest.drive(TableRunner(scores))) == "completed"
    ok = session_summary("honest", cfg.runs_dir)
    assert not ok["person_fit"]["flagged"] and "fits" in _format_summary(ok)


# ----------------------------------------------------------------------------- robust estimate
def test_lapse_likelihood_on_a_known_case() -> None:
    """One 2PL item (a = 1.3, b = 0.4) failed, prior N(0, 1): EAP by direct integration."""
    from scipy import integrate

    from orchestrator.irt import GridSpec, Posterior
    from orchestrator.irt.model import GradedResponseModel, with_lapse

    a, b, eps = 1.3, 0.4, 0.1

    def eap(lapse: float) -> float:
        like = lambda t: lapse / 2 + (1 - lapse) / (1 + np.exp(a * (t - b)))  # noqa: E731
        dens = lambda t: np.exp(-0.5 * t * t) * like(t)  # noqa: E731
        num = integrate.quad(lambda t: t * dens(t), -10, 10)[0]
        return num / integrate.quad(dens, -10, 10)[0]

    for lapse in (0.0, eps):
        model = GradedResponseModel.from_difficulty([a], [[b]])
        post = Posterior(model, lapse=lapse, grid=GridSpec(n=401))
        post.update(0, 0)
        assert post.eap[0] == pytest.approx(eap(lapse), abs=1e-4)
    logp = np.log(np.array([0.2, 0.8]))
    np.testing.assert_allclose(with_lapse(logp, 2, 0.0), logp)
    np.testing.assert_allclose(np.exp(with_lapse(logp, 2, 0.1)), 0.05 + 0.9 * np.exp(logp))


def test_lapse_bounds_what_a_few_deliberate_failures_cost(bank) -> None:
    """θ = 1 answered by the book, plus three failures on the bank's easiest items."""
    from orchestrator.irt import Posterior, expected_score, item_information

    expected = expected_score(np.array([1.0]), bank.a, bank.b)[0]
    easy = np.argsort(expected / (bank.n_categories - 1))[::-1][:3]
    info = item_information(np.array([1.0]), bank.a, bank.b)[0]
    rest = [i for i in np.argsort(-info) if i not in easy][:20]
    shift = {}
    for lapse in (0.0, 0.1):
        post = Posterior(PreparedBank.of(bank).model, lapse=lapse)
        for i in rest:  # the expected score, rounded: a perfectly consistent pattern
            post.update(int(i), round(float(expected[i])))
        before = post.eap[0]
        for i in easy:
            post.update(int(i), 0)
        shift[lapse] = before - post.eap[0]
    assert shift[0.0] > 0.25
    assert shift[0.1] < 0.5 * shift[0.0]


def test_lapse_is_one_code_path_live_replay_and_estimate(bank) -> None:
    from orchestrator.cat import CatController
    from orchestrator.irt.ability import estimate_abilities

    ctl = CatController(bank, rng=3, lapse=0.05)
    x = draw_scores(np.zeros(len(bank)), bank.a, bank.b, np.random.default_rng(1).random(len(bank)))
    x[:5] = 0
    for _ in range(15):
        (item,) = ctl.next_items()
        ctl.record(item, int(x[bank.index[item]]))
    again = CatController.from_dict(ctl.to_dict(), bank)
    assert again.lapse == 0.05 and np.array_equal(again.theta, ctl.theta)
    idx = np.array([bank.index[i] for i in ctl.administered])
    est = estimate_abilities(
        bank.a, bank.b, np.zeros(15, int), idx, x[idx], 1, grid=np.linspace(-6, 6, 2401), lapse=0.05
    )
    assert est.theta[0] == pytest.approx(ctl.theta[0], abs=0.01)
    sims = simulate_tests(bank, make_selection("max_info"), np.zeros(3), 15, lapse=0.05)
    assert np.isfinite(sims.theta_hat).all()
    with pytest.raises(ConfigError, match=r"lapse must be a number in \[0, 1\)"):
        CatController(bank, lapse=1.0)


# ----------------------------------------------------------------------------- replay with misfit
def test_simulate_injects_aberrant_subjects_and_reports_them_per_group(bank, tmp_path) -> None:
    from orchestrator.api import simulate
    from orchestrator.cli import main
    from orchestrator.data import Responses, write_responses

    rng = np.random.default_rng(8)
    theta = rng.normal(0.8, 0.5, 60)
    x = draw_scores(
        np.repeat(theta, len(bank)),
        np.tile(bank.a, 60),
        np.tile(bank.b, (60, 1)),
        rng.random(60 * len(bank)),
    ).reshape(60, len(bank))
    triples = [(f"m{s}", bank.ids[j], int(x[s, j])) for s in range(60) for j in range(len(bank))]
    resp = Responses.from_triples(triples)
    doc = simulate(
        bank, resp, strategies=["cat"], max_items=20, aberrant=["gamer:k=5"],
        aberrant_share=0.25, aberrant_add=True, person_fit=True, per_subject=True,
    )  # fmt: skip
    assert doc["n_subjects"] == 75 and doc["aberrant"]["gamer"]["n_subjects"] == 15
    groups = doc["strategies"]["cat"]["groups"]
    fit20 = {g: groups[g]["steps"][19] for g in ("fitting", "gamer")}
    assert fit20["gamer"]["flagged"] > 0.5 > 0.15 > fit20["fitting"]["flagged"]
    assert fit20["gamer"]["bias"] < fit20["fitting"]["bias"] - 0.2
    copies = [s for s in doc["subjects"] if s["subject"].endswith("~gamer")]
    assert len(copies) == 15 and all(s["group"] == "gamer" for s in copies)
    original = {s["subject"]: s for s in doc["subjects"]}
    for c in copies:  # a copy is measured against its original's clean estimate
        assert c["theta_full"] == original[c["subject"][: -len("~gamer")]]["theta_full"]
    replaced = simulate(bank, resp, strategies=["cat"], max_items=5, aberrant=["sandbagger"])
    assert replaced["n_subjects"] == 60 and replaced["aberrant"]["sandbagger"]["n_subjects"] == 12
    with pytest.raises(ConfigError, match="aberrant_share must be in"):
        simulate(bank, resp, aberrant=["gamer"], aberrant_share=0.0)
    with pytest.raises(ConfigError, match="need more than the 60 subjects"):
        simulate(bank, resp, aberrant=["gamer", "sandbagger"], aberrant_share=0.6)
    bank.save(tmp_path / "bank")
    csv = write_responses(tmp_path / "r.csv", triples)
    code = main(
        ["simulate", "--bank", str(tmp_path / "bank"), "--responses", str(csv), "--max-items",
         "10", "--aberrant", "random_responder", "--aberrant-share", "0.1", "--lapse", "0.05"]
    )  # fmt: skip
    assert code == 0


# ----------------------------------------------------------------------------- batches
def test_a_batched_null_takes_the_tests_a_batched_session_takes(bank) -> None:
    """The null's simulees pick k items per round exactly as ``next_items(k)`` does live,
    each conditioning on its own round's picks (several simulees at once)."""
    from orchestrator.cat import CatController

    thetas = np.array([-1.0, 0.0, 1.5])
    x = np.stack(
        [
            draw_scores(
                np.full(len(bank), th), bank.a, bank.b, np.random.default_rng(s).random(len(bank))
            )
            for s, th in enumerate(thetas)
        ]
    )
    batched = {}
    for rule in ("max_info", "variance_reduction"):
        sims = batched[rule] = simulate_tests(
            bank,
            make_selection(rule),
            thetas,
            12,
            modify=lambda rows, items, positions, honest: x[rows, items],
            batch_size=3,
        )
        for s in range(3):
            ctl = CatController(bank, selection=rule, rng=0)
            for _ in range(4):
                for item in ctl.next_items(3):
                    ctl.record(item, int(x[s, bank.index[item]]))
            assert [bank.ids[i] for i in sims.items[s]] == ctl.administered, (rule, s)
            assert sims.theta_hat[-1, s] == pytest.approx(ctl.theta[0])
    one_by_one = simulate_tests(
        bank, make_selection("max_info"), thetas, 12, modify=lambda r, i, p, h: x[r, i]
    )
    assert one_by_one.items.tolist() != batched["max_info"].items.tolist()  # batches matter
    ctl = CatController(bank, rng=0, person_fit={"batch_size": 3, "replicates": 20})
    for _ in range(2):
        for item in ctl.next_items(3):
            ctl.record(item, int(x[0, bank.index[item]]))
    fit = ctl.person_fit()
    assert fit is not None and fit.p is not None
    assert ctl.to_dict()["person_fit_settings"]["batch_size"] == 3
    assert CatController.from_dict(ctl.to_dict(), bank).person_fit() == fit


def test_p_values_are_uniform_under_batches(bank) -> None:
    """Seeded; the null is simulated in batches of 3 as the tests are (tolerances as above,
    for a 200-per-node null and 500 tests)."""
    rule = make_selection("max_info")
    null = simulate_fit_null(bank, rule, 12, replicates=200, nodes=NODES, seed=5, batch_size=3)
    assert null.spec["batch_size"] == 3
    single = simulate_fit_null(bank, rule, 12, replicates=200, nodes=NODES, seed=5)
    assert single is not null
    theta = np.random.default_rng(8).normal(0.0, 1.0, 500)
    sims = simulate_tests(bank, rule, theta, 12, seed=9, batch_size=3)
    st = FitStatistics.from_stacked(sims.stats[:, 11], np.full(500, 12))
    _, p = null.p_values(st, sims.theta_hat[12])
    assert stats.kstest(p, "uniform").statistic < 0.1
    assert 0.02 <= np.mean(p < 0.05) <= 0.09


def test_the_session_passes_its_batch_size_to_person_fit() -> None:
    from orchestrator.config import PersonFitSettings

    assert PersonFitSettings().for_controller(4)["batch_size"] == 4
    assert PersonFitSettings(enabled=False).for_controller(4) is None
    with pytest.raises(ConfigError, match="batch_size"):
        from orchestrator.cat import CatController

        CatController(tagged_bank(10, seed=1), person_fit={"batch_size": 0})


# ----------------------------------------------------------------------------- disk cache
@pytest.fixture()
def disk_store(tmp_path):
    from orchestrator.cat import fit
    from orchestrator.session.null_cache import DiskNullStore

    store = DiskNullStore(tmp_path / "nulls")
    previous = fit.set_null_store(store)
    yield store
    fit.set_null_store(previous)


def _null(bank, **kw):
    return simulate_fit_null(bank, make_selection("max_info"), 6, replicates=20, nodes=NODES, **kw)


def _forget_memory(monkeypatch) -> None:
    """What a new process sees: no table in memory."""
    from orchestrator.cat import fit

    monkeypatch.setattr(fit, "_CACHE", type(fit._CACHE)())


def _same(a: FitNull, b: FitNull) -> bool:
    return all(
        np.array_equal(getattr(a, n), getattr(b, n), equal_nan=True)
        for n in ("nodes", "centres", "stats", "min_p")
    ) and json.dumps(a.spec, sort_keys=True, default=str) == json.dumps(
        b.spec, sort_keys=True, default=str
    )


def test_a_new_process_reads_the_null_from_disk(bank, disk_store, monkeypatch) -> None:
    from orchestrator.cat import fit

    _forget_memory(monkeypatch)
    first = _null(bank, seed=11)
    assert len(list(disk_store.folder.glob("*.npz"))) == 1
    _forget_memory(monkeypatch)

    def no_simulation(*a, **kw):  # type: ignore[no-untyped-def]
        raise AssertionError("the stored table should have been used")

    monkeypatch.setattr(fit, "simulate_tests", no_simulation)
    again = _null(bank, seed=11)
    assert again is not first and _same(again, first)
    with pytest.raises(AssertionError, match="stored table"):
        _null(bank, seed=11, lapse=0.05)  # other inputs, other key: not in the store


def test_a_damaged_cache_file_is_rebuilt_not_trusted(bank, disk_store, monkeypatch) -> None:
    _forget_memory(monkeypatch)
    good = _null(bank, seed=12)
    (path,) = disk_store.folder.glob("*.npz")
    key = path.stem
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated (a crash of a careless writer)
    assert disk_store.load(key) is None
    _forget_memory(monkeypatch)
    assert _same(_null(bank, seed=12), good)
    assert disk_store.load(key) is not None  # rewritten whole
    # loadable but altered: a table whose numbers do not hash to its digest is not used
    with np.load(path) as npz:
        arrays = {n: np.array(npz[n]) for n in npz.files}
    arrays["stats"] = arrays["stats"] + 1.0
    np.savez(path, **arrays)
    assert disk_store.load(key) is None
    _forget_memory(monkeypatch)
    assert _same(_null(bank, seed=12), good)
    # a table stored under another key (a renamed file) is not used either
    other = disk_store.folder / ("0" * 64 + ".npz")
    other.write_bytes(path.read_bytes())
    assert disk_store.load("0" * 64) is None


def test_the_api_keeps_nulls_on_disk_as_the_cli_does(bank, tmp_path, monkeypatch) -> None:
    """A library caller's next process reads the null instead of simulating it again
    (a live session computes it inside its event loop); a store the caller set is kept."""
    from orchestrator.api import simulate
    from orchestrator.cat import fit
    from orchestrator.data import Responses
    from orchestrator.session.null_cache import DiskNullStore

    monkeypatch.setenv("AGENTCAT_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(21)
    x = rng.integers(0, 2, (12, len(bank)))  # the bank is dichotomous
    resp = Responses.from_triples(
        [(f"m{s}", bank.ids[j], int(x[s, j])) for s in range(12) for j in range(len(bank))]
    )
    previous = fit.set_null_store(None)
    try:
        _forget_memory(monkeypatch)
        simulate(bank, resp, strategies=["cat"], max_items=4, person_fit=True)
        assert isinstance(fit.null_store(), DiskNullStore)
        assert list((tmp_path / "cache" / "person-fit").glob("*.npz"))
        mine = DiskNullStore(tmp_path / "mine")
        fit.set_null_store(mine)
        _forget_memory(monkeypatch)
        simulate(bank, resp, strategies=["cat"], max_items=4, person_fit=True)
        assert fit.null_store() is mine and list(mine.folder.glob("*.npz"))
    finally:
        fit.set_null_store(previous)


def test_an_unwritable_cache_costs_speed_not_the_session(bank, tmp_path, monkeypatch) -> None:
    from orchestrator.cat import fit
    from orchestrator.session.null_cache import DiskNullStore

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    previous = fit.set_null_store(DiskNullStore(blocker / "nulls"))
    try:
        _forget_memory(monkeypatch)
        assert _null(bank, seed=13).max_items == 6
    finally:
        fit.set_null_store(previous)


def test_a_cache_folder_that_cannot_be_searched_costs_speed_not_the_session(
    bank, tmp_path, monkeypatch
) -> None:
    """EACCES on the folder (another user's cache; mode 000) is not swallowed by
    ``Path.is_file`` the way ENOENT is. Tests run as root here, where permissions do not
    bite, so the engine's answer is simulated by making ``is_file`` raise it."""
    from orchestrator.cat import fit
    from orchestrator.session.null_cache import DiskNullStore

    def denied(self: Path) -> bool:
        raise PermissionError(13, "Permission denied", str(self))

    store = DiskNullStore(tmp_path / "nulls")
    previous = fit.set_null_store(store)
    try:
        _forget_memory(monkeypatch)
        monkeypatch.setattr(Path, "is_file", denied)
        assert store.load("0" * 64) is None
        assert _null(bank, seed=15).max_items == 6
    finally:
        fit.set_null_store(previous)


def test_the_cache_folder_keeps_under_its_size_bound_dropping_the_least_recently_used(
    bank, tmp_path, monkeypatch
) -> None:
    import os

    from orchestrator.session.null_cache import DiskNullStore

    _forget_memory(monkeypatch)
    table = _null(bank, seed=16)
    probe = DiskNullStore(tmp_path / "probe")
    probe.save("a" * 64, table)
    size = probe.path("a" * 64).stat().st_size
    store = DiskNullStore(tmp_path / "nulls", max_bytes=int(2.5 * size))  # room for two
    keys = [c * 64 for c in "123"]
    for i, key in enumerate(keys[:2]):
        store.save(key, table)
        os.utime(store.path(key), (1000 + i, 1000 + i))  # "1" older than "2"
    assert store.load(keys[0]) is not None  # a hit makes "1" the most recently used
    store.save(keys[2], table)  # over the bound: the least recently used ("2") goes
    assert sorted(f.stem for f in store.folder.glob("*.npz")) == [keys[0], keys[2]]
    tiny = DiskNullStore(tmp_path / "nulls", max_bytes=0)
    tiny.save(keys[1], table)  # the table just saved is kept even over the bound
    assert [f.stem for f in tiny.folder.glob("*.npz")] == [keys[1]]
    monkeypatch.setenv("AGENTCAT_NULL_CACHE_MB", "1.5")
    assert DiskNullStore(tmp_path).max_bytes == int(1.5 * 2**20)
    monkeypatch.setenv("AGENTCAT_NULL_CACHE_MB", "lots")
    assert DiskNullStore(tmp_path).max_bytes == 256 * 2**20


def test_concurrent_writers_never_show_a_reader_half_a_table(bank, disk_store, monkeypatch) -> None:
    """Sessions racing to store the same table: each write is whole (temp file + rename)."""
    import threading

    _forget_memory(monkeypatch)
    table = _null(bank, seed=14)
    (path,) = disk_store.folder.glob("*.npz")
    key, seen, stop = path.stem, [], threading.Event()

    def write() -> None:
        for _ in range(15):
            disk_store.save(key, table)

    def read() -> None:
        while not stop.is_set():
            seen.append(disk_store.load(key))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write) for _ in range(3)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert seen and all(t is not None and _same(t, table) for t in seen)
    assert [p.name for p in disk_store.folder.iterdir()] == [path.name]  # no temp file left
