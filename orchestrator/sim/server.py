"""An OpenAI-compatible chat-completions server around :class:`SimAgent` (a real HTTP server).

``POST /v1/chat/completions`` answers as the persona named by ``model``;
``GET /v1/models`` lists the personas; ``GET /health`` says it is up.
Fault injection (for tests of the runner's fault handling), each a rate in
[0, 1] drawn per request from a seeded generator: HTTP 429, HTTP 500, a slow
answer (sleeps ``slow_s`` before answering), malformed JSON, and a dropped
connection (closed without a response). ``echo_key`` makes a 401 echo the
API key it was presented in its body, as some gateways do. The hostile
personas of :mod:`orchestrator.sim.hostile` (``escape``, ``destroyer``,
``garbage``, ``slow``, ``echo``) are always available.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.sim.agent import SimAgent
from orchestrator.sim.hostile import HOSTILE, hostile_turn

__all__ = ["FaultConfig", "SimServer", "SimStats"]


class FaultConfig(BaseModel):
    """Rates of injected faults (each in [0, 1]) and their seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_429: float = Field(0.0, ge=0, le=1)
    rate_500: float = Field(0.0, ge=0, le=1)
    rate_slow: float = Field(0.0, ge=0, le=1)
    slow_s: float = Field(30.0, ge=0)
    rate_malformed: float = Field(0.0, ge=0, le=1)
    rate_drop: float = Field(0.0, ge=0, le=1)
    echo_key: bool = False
    """A 401 answer echoes the presented API key in its body."""
    seed: int = 0

    def draw(self, rng: np.random.Generator) -> str | None:
        """One request's fault (or None), with the rates as independent-ish slices of [0, 1)."""
        u = rng.random()
        for name, rate in (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("slow", self.rate_slow),
            ("malformed", self.rate_malformed),
            ("drop", self.rate_drop),
        ):
            if u < rate:
                return name
            u -= rate
        return None


@dataclass
class SimStats:
    """Counts kept by the server (exposed at ``GET /stats``)."""

    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)
    unauthorised: int = 0
    draws: dict[str, dict[str, int]] = field(default_factory=dict)
    """persona → item → the category it drew (to compare with what the scorer gave)."""


class SimServer:
    """Serve ``agent`` over HTTP on ``host:port`` (port 0 picks a free one).

    Args:
        agent: The simulated agent.
        faults: Fault injection rates.
        api_key: If set, requests must carry ``Authorization: Bearer <api_key>``.
        log: Print one line per request to stderr.
    """

    def __init__(
        self,
        agent: SimAgent,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultConfig | None = None,
        api_key: str | None = None,
        log: bool = False,
    ) -> None:
        self.agent = agent
        self.faults = faults or FaultConfig()
        self.api_key = api_key
        self.log = log
        self.stats = SimStats()
        self._rng = np.random.default_rng(self.faults.seed)
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"server_ref": self})
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> SimServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_fault(self) -> str | None:
        with self._lock:
            self.stats.requests += 1
            fault = self.faults.draw(self._rng)
            if fault:
                self.stats.faults[fault] = self.stats.faults.get(fault, 0) + 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    server_ref: SimServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet by default
        if self.server_ref.log:
            sys.stderr.write(f"sim-server: {format % args}\n")

    def _send(self, status: int, body: dict[str, Any] | bytes) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout)
            self.close_connection = True

    def do_GET(self) -> None:
        srv = self.server_ref
        if self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif self.path.rstrip("/") == "/v1/models":
            names = [*(sorted(srv.agent.personas) or ["theta_<x>"]), *HOSTILE]
            self._send(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": n, "object": "model", "owned_by": "agentcat-sim"} for n in names
                    ],
                },
            )
        elif self.path.rstrip("/") == "/stats":
            s = srv.stats
            self._send(
                200,
                {
                    "requests": s.requests,
                    "faults": s.faults,
                    "items": s.items,
                    "unauthorised": s.unauthorised,
                    "draws": s.draws,
                },
            )
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        srv = self.server_ref
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        if srv.api_key is not None and self.headers.get("Authorization") != f"Bearer {srv.api_key}":
            with srv._lock:
                srv.stats.unauthorised += 1
            self._send_401(echo=srv.faults.echo_key)
            return
        fault = srv._next_fault()
        if fault == "429":
            self._send(429, {"error": {"message": "rate limited (injected)", "type": "rate_limit"}})
            return
        if fault == "500":
            self._send(
                500, {"error": {"message": "server error (injected)", "type": "server_error"}}
            )
            return
        if fault == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if fault == "slow":
            time.sleep(srv.faults.slow_s)
        try:
            req = json.loads(raw or b"{}")
            model = str(req.get("model", ""))
            messages = list(req.get("messages") or [])
            tools = [t.get("function", {}).get("name", "") for t in req.get("tools") or []]
        except (ValueError, AttributeError):
            self._send(400, {"error": {"message": "body is not valid JSON", "type": "bad_request"}})
            return
        try:
            answer = self._answer(model, messages, tools)
        except KeyError:
            self._send(
                404, {"error": {"message": f"unknown persona {model!r}", "type": "model_not_found"}}
            )
            return
        if answer["item"] is not None:
            with srv._lock:
                srv.stats.items[answer["item"]] = srv.stats.items.get(answer["item"], 0) + 1
                if answer.get("category") is not None:
                    srv.stats.draws.setdefault(model, {})[answer["item"]] = answer["category"]
        if answer.get("echo_key"):
            self._send_401(echo=True)
            return
        if fault == "malformed":
            self._send(200, b'{"id": "chatcmpl-broken", "choices": [{"message": ')
            return
        prompt_tokens = sum(len(json.dumps(m)) for m in messages) // 4 + 1
        completion_tokens = len(json.dumps(answer["message"])) // 4 + 1
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": answer["message"],
                    "finish_reason": answer["finish_reason"],
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        if req.get("stream"):
            self._send_stream(body)
        else:
            self._send(200, body)

    def _answer(self, model: str, messages: list[Any], tools: list[str]) -> dict[str, Any]:
        """The persona's answer; hostile personas play only known scenarios."""
        srv = self.server_ref
        if model not in HOSTILE:
            return srv.agent.respond(model, messages, tools)
        item = srv.agent.recognise(messages)
        if item is None:  # e.g. the preflight request
            return {
                "message": {"role": "assistant", "content": "Hello."},
                "finish_reason": "stop",
                "item": None,
            }
        move = hostile_turn(model, messages, tools)
        if move.get("delay_s"):
            time.sleep(srv.faults.slow_s)
            return srv.agent.respond("theta_0.0", messages, tools)
        return {**move, "item": item}

    def _send_401(self, echo: bool) -> None:
        presented = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        text = (
            f"Incorrect API key provided: {presented}. Check the key in your account settings."
            if echo
            else "invalid API key"
        )
        self._send(
            401, {"error": {"message": text, "type": "invalid_request_error", "code": "invalid"}}
        )

    def _send_stream(self, body: dict[str, Any]) -> None:
        """Server-sent events: the whole answer as one chunk, then [DONE]."""
        choice = body["choices"][0]
        msg = dict(choice["message"])
        for i, call in enumerate(msg.get("tool_calls") or []):
            call["index"] = i
        chunk = {
            **body,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": msg, "finish_reason": choice["finish_reason"]}],
        }
        data = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
