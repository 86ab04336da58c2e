"""The simulated agent: an agent of ability θ that replays reference solutions.

For each request it (1) recognises the item from the conversation's first
user message (every item's prompt is unique), (2) draws the outcome category
from the bank's GRM at the persona's θ — deterministically per (seed, persona,
item), so a re-run of the same item after a crash behaves the same; θ is a
vector for a bank of several dimensions (``careful=1.5,0.2``,
``theta_1.5_0.2``; one number serves every dimension) — and (3)
replays that category's script as real tool calls, one per turn, ending with
``submit`` (or a plain answer when no ``submit`` tool is offered). The sandbox
and the scorer therefore do real work. What to play for an item comes from its
source (:meth:`~orchestrator.runner.sources.ItemSource.sim_scripts`): a
scenario's reference solutions, for instance. Items a fixed script cannot play
(AgentDojo's benign and injected runs share one prompt; which one it is shows
only in the tool outputs) come with a
:class:`~orchestrator.runner.sources.Player` that reads the conversation and
asks for the category of the item once it knows it — the same draw.
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.bank import ItemBank
from orchestrator.cat.fit import require_one_dimension
from orchestrator.runner.sources import Conversation, Move, Player, Script, ScriptedCall
from orchestrator.sim.aberrant import Aberrance, parse_aberrance

__all__ = [
    "Persona",
    "Script",
    "SimAgent",
    "parse_personas",
    "players_for_bank",
    "scripts_for_bank",
]

_NUMBER = r"-?\d+(?:\.\d+)?"
_THETA_NAME = re.compile(rf"^theta[=_:]?({_NUMBER}(?:_{_NUMBER})*)$")


@dataclass(frozen=True)
class Persona:
    """A simulated model: its name (the API's ``model`` field), ability θ, and how it misfits.

    ``theta`` is a number, or one number per dimension of a bank of several;
    ``aberrance`` (one-dimensional banks) makes it misfit on purpose.
    """

    name: str
    theta: float | tuple[float, ...]
    aberrance: Aberrance | None = None

    def point(self, n_dims: int) -> np.ndarray:
        """θ as a point ``(D,)`` of a D-dimensional model (a number serves every dimension).

        Raises:
            ValueError: θ has neither 1 nor D entries.
        """
        theta = np.atleast_1d(np.asarray(self.theta, dtype=float))
        if theta.size not in (1, n_dims):
            raise ValueError(
                f"persona {self.name!r} has θ of {theta.size} entries; the bank has {n_dims} "
                "dimension(s)"
            )
        return np.broadcast_to(theta, (n_dims,))


def parse_personas(spec: Iterable[str]) -> dict[str, Persona]:
    """``["careful=1.5", "mixed=1.5,-0.2", "g=1:gamer:k=3"]`` → personas by name.

    Raises:
        ValueError: not ``NAME=THETA[,THETA…][:TYPE[:key=value,...]]``.
        ConfigError: an unknown aberrant type or argument.
    """
    out: dict[str, Persona] = {}
    for item in spec:
        name, sep, rest = item.partition("=")
        value, _, kind = rest.partition(":")
        try:
            values = [float(v) for v in value.split(",")]
        except ValueError:
            values = [float("nan")]
        if not sep or not name or not np.all(np.isfinite(values)):
            raise ValueError(
                "persona must look like NAME=THETA[:TYPE], or NAME=THETA,THETA,… with one θ per "
                f"dimension (e.g. careful=1.5, mixed=1.5,-0.2, g=1:gamer:k=3); got {item!r}"
            )
        theta = values[0] if len(values) == 1 else tuple(values)
        out[name] = Persona(name, theta, parse_aberrance(kind) if kind else None)
    return out


def scripts_for_bank(
    bank: ItemBank, environments: str | Path = "environments"
) -> dict[str, Script]:
    """What to play for every item of ``bank`` whose source supports the simulated agent.

    Raises:
        BankError: an item's source is invalid.
    """
    from orchestrator.runner.sources import SourceContext, bank_sources, sim_scripts

    return sim_scripts(bank, bank_sources(bank), SourceContext(environments=Path(environments)))


def players_for_bank(bank: ItemBank, environments: str | Path = "environments") -> list[Player]:
    """Players for the items of ``bank`` that fixed scripts cannot play (AgentDojo's).

    Raises:
        BankError: an item's source is invalid.
    """
    from orchestrator.runner.sources import SourceContext, bank_sources, sim_players

    return sim_players(bank, bank_sources(bank), SourceContext(environments=Path(environments)))


@dataclass
class SimAgent:
    """Answers chat-completion requests as a persona of ability θ.

    Args:
        bank: Supplies each item's GRM parameters (its model draws the outcomes).
        scripts: Reference solutions by item id.
        personas: Known personas by model name; names like ``theta_1.5`` (or
            ``theta_1.5_-0.2``, one number per dimension) also work.
        default_theta: θ for any other model name (None: unknown names are refused).
        seed: Seeds every outcome draw.
        players: Players of the items no script covers, asked in turn.

    Raises:
        ValueError: a persona's θ has neither one entry nor one per dimension.
        ConfigError: a misfitting persona on a bank of several dimensions.
    """

    bank: ItemBank
    scripts: Mapping[str, Script]
    personas: Mapping[str, Persona] = field(default_factory=dict)
    default_theta: float | tuple[float, ...] | None = None
    seed: int = 0
    players: Sequence[Player] = ()
    _by_prompt: dict[str, str] = field(init=False, default_factory=dict)
    _asked: dict[str, dict[str, int]] = field(init=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._by_prompt = {s.prompt: s.item_id for s in self.scripts.values()}
        others = [] if self.default_theta is None else [Persona("default", self.default_theta)]
        for persona in [*self.personas.values(), *others]:
            persona.point(self.bank.n_dims)
            if persona.aberrance is not None:
                require_one_dimension(self.bank, f"misfitting persona {persona.name!r}")
                persona.aberrance.prepare(self.bank)

    def persona(self, model: str) -> Persona | None:
        """The persona a model name selects; None for an unknown name (or a θ that does not fit)."""
        if model in self.personas:
            return self.personas[model]
        m = _THETA_NAME.match(model)
        if m:
            values = [float(v) for v in m.group(1).split("_")]
            found = Persona(model, values[0] if len(values) == 1 else tuple(values))
            return found if len(values) in (1, self.bank.n_dims) else None
        if self.default_theta is not None:
            return Persona(model, self.default_theta)
        return None

    def recognise(self, messages: list[dict[str, Any]]) -> str | None:
        """The item whose prompt is the conversation's first user message."""
        for msg in messages:
            if msg.get("role") == "user":
                text = _text(msg.get("content")).strip()
                if text in self._by_prompt:
                    return self._by_prompt[text]
                return next((iid for p, iid in self._by_prompt.items() if p in text), None)
        return None

    def category(self, persona: Persona, item_id: str) -> int:
        """Outcome category drawn from P(X = k | θ) with a seed fixed per (seed, persona, item).

        An aberrant persona then changes it (its position is the number of
        distinct items it was asked before this one). The model speaks in keyed
        categories; a reverse-keyed item's raw outcome is the reverse (the
        controller reverses it back when it records the score).
        """
        i = self.bank.index[item_id]
        theta = persona.point(self.bank.n_dims)[None, :]
        probs = self.bank.model.category_probs_at(theta, np.array([i]))
        p = probs[0, : int(self.bank.n_categories[i])]
        rng = np.random.default_rng(
            [self.seed, zlib.crc32(persona.name.encode()), zlib.crc32(item_id.encode())]
        )
        honest = int(rng.choice(len(p), p=p / p.sum()))
        if persona.aberrance is not None:
            honest = self._aberrant(persona, item_id, i, honest, rng)
        return len(p) - 1 - honest if self.bank.reverse_keyed[i] else honest

    def _aberrant(
        self, persona: Persona, item_id: str, i: int, honest: int, rng: np.random.Generator
    ) -> int:
        assert persona.aberrance is not None
        with self._lock:
            asked = self._asked.setdefault(persona.name, {})
            position = asked.setdefault(item_id, len(asked))
        given = persona.aberrance.modify(
            self.bank,
            np.array([persona.theta]),
            np.array([i]),
            np.array([position]),
            np.array([honest]),
            rng,
        )
        return int(given[0])

    def respond(
        self, model: str, messages: list[dict[str, Any]], tools: list[str]
    ) -> dict[str, Any]:
        """The next assistant message (OpenAI chat format) and bookkeeping for logs."""
        persona = self.persona(model)
        if persona is None:
            raise KeyError(model)
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        item = self.recognise(messages)
        if item is not None:
            move = self._scripted(persona, item, messages, tools, turn)
        else:
            move = self._play(persona, messages, tools) or Move(
                None, None, answer="I do not recognise this task."
            )
        return _message(move, turn)

    def _scripted(
        self,
        persona: Persona,
        item: str,
        messages: list[dict[str, Any]],
        tools: list[str],
        turn: int,
    ) -> Move:
        """The drawn category's script: its next call, then ``submit``, then its final answer."""
        category = self.category(persona, item)
        calls, final = self.scripts[item].solutions[category]
        if turn < len(calls) and calls[turn].tool in tools:
            return Move(item, category, call=calls[turn])
        if "submit" in tools and not _submitted(messages):
            return Move(item, category, call=ScriptedCall("submit", {"answer": final}))
        return Move(item, category, answer=final)

    def _play(
        self, persona: Persona, messages: list[dict[str, Any]], tools: list[str]
    ) -> Move | None:
        """The first player's move that knows this conversation (None: nobody does)."""
        first = next((_text(m.get("content")) for m in messages if m.get("role") == "user"), "")
        conv = Conversation(
            first_user=first.strip(),
            tool_outputs=[_text(m.get("content")) for m in messages if m.get("role") == "tool"],
            n_calls=len(_calls(messages)),
            tools=tools,
        )
        for player in self.players:
            move = player.step(conv, lambda item: self.category(persona, item))
            if move is not None:
                return move
        return None


def _calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for m in messages for c in (m.get("tool_calls") or [])]


def _message(move: Move, turn: int) -> dict[str, Any]:
    """A move as the chat-completions answer ``respond`` returns."""
    info = {"item": move.item, "category": move.category}
    if move.call is None:
        return {
            "message": {"role": "assistant", "content": move.answer},
            "finish_reason": "stop",
            **info,
        }
    call_id = f"call_{zlib.crc32(f'{move.item}:{turn}'.encode()):08x}"
    tool_call = {
        "id": call_id,
        "type": "function",
        "function": {"name": move.call.tool, "arguments": json.dumps(move.call.arguments)},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
    return {"message": message, "finish_reason": "tool_calls", **info}


def _submitted(messages: list[dict[str, Any]]) -> bool:
    return any((c.get("function") or {}).get("name") == "submit" for c in _calls(messages))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""
