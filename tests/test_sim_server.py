"""The simulated agent endpoint, over real HTTP: replay, outcome law, personas, faults."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from orchestrator.irt import category_probs
from orchestrator.runner.sources import ScriptedCall
from orchestrator.sim.agent import Script, SimAgent, parse_personas
from orchestrator.sim.server import FaultConfig, SimServer
from tests.conftest import make_bank

BANK = make_bank(60, 4, seed=3)


def _echo(text: str) -> ScriptedCall:
    return ScriptedCall("bash", {"command": f"echo {text}"})


SCRIPTS = {
    iid: Script(
        iid,
        f"Task {iid}: tidy the disk.",
        {c: ([_echo(f"{iid}-{c}-{n}") for n in range(c + 1)], f"done {c}") for c in range(4)},
    )
    for iid in BANK.ids
}
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("bash", "submit")
]


def _agent(**kw) -> SimAgent:
    return SimAgent(BANK, SCRIPTS, parse_personas(["careful=1.5", "sloppy=-1.5"]), **kw)


def _post(url: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json=body, timeout=kw.pop("timeout", 10), **kw)


def test_replays_the_drawn_solution_turn_by_turn_then_submits() -> None:
    agent = _agent()
    item = BANK.ids[0]
    category = agent.category(agent.persona("careful"), item)
    commands, final = SCRIPTS[item].solutions[category]
    messages = [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": SCRIPTS[item].prompt},
    ]
    seen = []
    with SimServer(agent) as srv:
        for _ in range(len(commands) + 1):
            r = _post(srv.url, {"model": "careful", "messages": messages, "tools": TOOLS})
            assert r.status_code == 200
            msg = r.json()["choices"][0]["message"]
            call = msg["tool_calls"][0]
            seen.append((call["function"]["name"], json.loads(call["function"]["arguments"])))
            messages += [msg, {"role": "tool", "tool_call_id": call["id"], "content": "ok"}]
        r = _post(srv.url, {"model": "careful", "messages": messages, "tools": TOOLS})
        assert r.json()["choices"][0]["message"]["content"] == final
        assert r.json()["usage"]["total_tokens"] > 0
        stats = httpx.get(srv.url.removesuffix("/v1") + "/stats").json()
    assert seen == [(c.tool, c.arguments) for c in commands] + [("submit", {"answer": final})]
    assert stats["items"][item] == len(commands) + 2


def test_outcomes_follow_the_bank_model_and_are_deterministic_per_item() -> None:
    agent = _agent(seed=11)
    persona = agent.persona("theta_0.3")
    assert persona is not None and persona.theta == 0.3
    draws = np.array([agent.category(persona, iid) for iid in BANK.ids])
    again = np.array([agent.category(persona, iid) for iid in BANK.ids])
    np.testing.assert_array_equal(draws, again)
    expected = category_probs(np.array(0.3), BANK.a, BANK.b).sum(axis=0)  # expected counts
    observed = np.bincount(draws, minlength=4)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # 99.9 % quantile of chi-square with 3 df
    # a stronger persona scores higher on average
    strong = np.mean([agent.category(agent.persona("careful"), i) for i in BANK.ids])
    weak = np.mean([agent.category(agent.persona("sloppy"), i) for i in BANK.ids])
    assert strong > weak + 0.5


def test_unknown_scenario_persona_and_key() -> None:
    with SimServer(_agent(), api_key="sekret") as srv:
        body = {"model": "careful", "messages": [{"role": "user", "content": "hello?"}]}
        assert _post(srv.url, body).status_code == 401
        auth = {"Authorization": "Bearer sekret"}
        r = _post(srv.url, body, headers=auth)
        assert r.json()["choices"][0]["message"]["content"] == "I do not recognise this task."
        r = _post(srv.url, {**body, "model": "nobody"}, headers=auth)
        assert r.status_code == 404 and "unknown persona" in r.text
        models = httpx.get(f"{srv.url}/models").json()
        assert [m["id"] for m in models["data"]][:2] == ["careful", "sloppy"]


def test_the_openai_client_parses_its_tool_calls() -> None:
    openai = pytest.importorskip("openai")
    with SimServer(_agent()) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        out = client.chat.completions.create(
            model="careful",
            messages=[{"role": "user", "content": SCRIPTS[BANK.ids[1]].prompt}],
            tools=TOOLS,
        )
    call = out.choices[0].message.tool_calls[0]
    assert call.function.name == "bash" and "echo" in json.loads(call.function.arguments)["command"]


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("rate_429", lambda r: r.status_code == 429),
        ("rate_500", lambda r: r.status_code == 500),
        ("rate_malformed", lambda r: r.status_code == 200 and _not_json(r.text)),
    ],
)
def test_injected_http_faults(fault: str, check) -> None:
    with SimServer(_agent(), faults=FaultConfig(**{fault: 1.0})) as srv:
        body = {"model": "careful", "messages": [{"role": "user", "content": "x"}]}
        assert check(_post(srv.url, body))


def test_injected_slow_answers_and_dropped_connections() -> None:
    body = {"model": "careful", "messages": [{"role": "user", "content": "x"}]}
    slow = SimServer(_agent(), faults=FaultConfig(rate_slow=1.0, slow_s=3))
    with slow as srv, pytest.raises(httpx.ReadTimeout):
        _post(srv.url, body, timeout=0.5)
    dropping = SimServer(_agent(), faults=FaultConfig(rate_drop=1.0))
    with dropping as srv, pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        _post(srv.url, body)


def test_fault_rates_are_seeded_and_roughly_honoured() -> None:
    cfg = FaultConfig(rate_429=0.2, rate_500=0.1, seed=4)
    draws = [cfg.draw(np.random.default_rng(4)) for _ in range(1)]
    rng = np.random.default_rng(4)
    many = [cfg.draw(rng) for _ in range(5000)]
    assert abs(many.count("429") / 5000 - 0.2) < 0.02
    assert abs(many.count("500") / 5000 - 0.1) < 0.02
    assert draws[0] == many[0]


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _turns(url: str, model: str, n: int, headers: dict | None = None) -> list[httpx.Response]:
    messages = [{"role": "user", "content": SCRIPTS[BANK.ids[1]].prompt}]
    out = []
    for _ in range(n):
        r = _post(url, {"model": model, "messages": messages, "tools": TOOLS}, headers=headers)
        out.append(r)
        if r.status_code != 200:
            break
        msg = r.json()["choices"][0]["message"]
        messages.append(msg)
        for call in msg.get("tool_calls") or []:
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": "ok"})
    return out


def test_hostile_personas_play_any_scenario_but_not_the_preflight() -> None:
    from orchestrator.sim.hostile import DESTROYER, ESCAPE, HOSTILE

    with SimServer(_agent(), faults=FaultConfig(slow_s=0.1)) as srv:
        listed = [m["id"] for m in httpx.get(f"{srv.url}/models").json()["data"]]
        assert set(HOSTILE) <= set(listed)
        for name in HOSTILE:  # an unknown conversation (the preflight request) is answered
            r = _post(srv.url, {"model": name, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, name
        for name, script in (("escape", ESCAPE), ("destroyer", DESTROYER)):
            calls = [
                r.json()["choices"][0]["message"]["tool_calls"][0]
                for r in _turns(srv.url, name, len(script) + 1)
            ]
            commands = [json.loads(c["function"]["arguments"]).get("command") for c in calls]
            assert commands == [*script, None] and calls[-1]["function"]["name"] == "submit"
        garbage = [r.json()["choices"][0] for r in _turns(srv.url, "garbage", 8)]
        names = [
            (c["message"].get("tool_calls") or [{"function": {"name": None}}])[0]["function"][
                "name"
            ]
            for c in garbage
        ]
        assert "submit" not in names and "rm_everything_now" in names
        raw = garbage[0]["message"]["tool_calls"][0]["function"]["arguments"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
        slow = _turns(srv.url, "slow", 1)[0].json()["choices"][0]["message"]
        assert slow["tool_calls"][0]["function"]["name"] in ("bash", "submit")


def test_the_echoing_endpoint_quotes_the_presented_key() -> None:
    key = "sk-test-echo-0123456789abcdef"
    with SimServer(_agent(), api_key=key, faults=FaultConfig(echo_key=True)) as srv:
        (echoed,) = _turns(srv.url, "echo", 1, headers={"Authorization": f"Bearer {key}"})
        assert echoed.status_code == 401 and key in echoed.text
        (wrong,) = _turns(
            srv.url, "careful", 1, headers={"Authorization": "Bearer sk-wrong-9876543210"}
        )
        assert wrong.status_code == 401 and "sk-wrong-9876543210" in wrong.text
    with SimServer(_agent(), api_key=key) as srv:  # without echo_key: a plain 401
        (plain,) = _turns(
            srv.url, "careful", 1, headers={"Authorization": "Bearer sk-wrong-9876543210"}
        )
        assert plain.status_code == 401 and "sk-wrong" not in plain.text
