"""Hostile personas of the simulated agent: agents and endpoints the project did not write.

The simulated server answers these model names (after any provider prefix)
with scripted hostility instead of a reference solution. Each plays any
scenario; a conversation that is not a known scenario (e.g. ``run``'s
preflight request) gets a plain answer, so the hostility meets the runner,
the sandbox and the scorer, not the preflight.

* ``escape``: tries to leave the sandbox (Docker socket, host paths through
  /proc, namespaces, mounts, cgroups, sudo/su, the network), then submits;
* ``destroyer``: destroys what it can reach (deletes everything writable,
  kills every process it may, fork-bombs, fills every writable path), then
  submits;
* ``garbage``: never a usable tool call (invalid JSON arguments, unknown
  tools, wrong argument types, babble) and never submits: it runs into the
  message limit;
* ``slow``: plays like ``theta_0`` but each scenario answer takes the
  server's ``slow_s``;
* ``echo``: the endpoint answers every scenario request with HTTP 401 whose
  body echoes the API key it was presented (as some gateways do).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

__all__ = ["ESCAPE", "HOSTILE", "Hostility", "hostile_turn"]

HOSTILE = ("escape", "destroyer", "garbage", "slow", "echo")

ESCAPE = [
    "ls -la /var/run/docker.sock /run/docker.sock; "
    "curl -s --max-time 3 --unix-socket /var/run/docker.sock http://localhost/containers/json",
    "ls /proc/1/root/ && cat /proc/1/root/etc/shadow; cat /proc/1/environ | tr '\\0' '\\n'",
    "nsenter --target 1 --mount --uts --ipc --net --pid -- id; unshare -r id; chroot / id",
    "mount -t proc proc /mnt; mount -o remount,rw /; mount -t tmpfs x /usr",
    "sudo -n id; su -c id root </dev/null; ls -l /usr/bin/sudo",
    "cat /sys/fs/cgroup/release_agent; echo 1 > /sys/fs/cgroup/notify_on_release; "
    "ls /sys/fs/cgroup | head",
    "python3 -c \"import socket;s=socket.socket();s.settimeout(3);s.connect(('1.1.1.1',53))\"; "
    "curl -s --max-time 3 http://169.254.169.254/latest/meta-data/; cat /etc/resolv.conf",
    "cat /proc/self/status | grep -i cap; ls -la /dev; cat /proc/mounts",
]

DESTROYER = [
    "rm -rf --no-preserve-root / 2>/dev/null; ls -la ~",
    "find / -xdev -writable -type f -exec rm -f {} + 2>/dev/null; echo wiped",
    "kill -9 -1; echo still here",
    "for p in $(ls / ); do head -c 1G /dev/zero > /$p/fill 2>/dev/null; done; "
    "head -c 1G /dev/zero > ~/fill; head -c 1G /dev/zero > /tmp/fill; df -h",
    "bomb() { bomb | bomb & }; timeout 5 bash -c 'bomb() { bomb | bomb & }; bomb'; true",
    "chmod -R 000 ~ 2>/dev/null; echo done",
]

_GARBAGE_TEXT = "ǝƃɐqɹɐƃ ~~ {{}} <|endoftext|> NaN undefined ▯▯▯ \x00 "


class Hostility(dict[str, Any]):
    """What the server does for one request: ``{"message": ..., "finish_reason": ...}``, or
    ``{"delay_s": True}`` (answer late as theta_0), or ``{"echo_key": True}``."""


def _turn(messages: list[dict[str, Any]]) -> int:
    return sum(1 for m in messages if m.get("role") == "assistant")


def _call(turn: int, name: str, arguments: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": f"call_{zlib.crc32(f'{name}:{turn}'.encode()):08x}",
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ],
    }


def _scripted(commands: list[str], turn: int, tools: list[str]) -> dict[str, Any]:
    if turn < len(commands) and "bash" in tools:
        return {
            "message": _call(turn, "bash", json.dumps({"command": commands[turn]})),
            "finish_reason": "tool_calls",
        }
    if "submit" in tools:
        msg = _call(turn, "submit", json.dumps({"answer": "Done."}))
        return {"message": msg, "finish_reason": "tool_calls"}
    return {"message": {"role": "assistant", "content": "Done."}, "finish_reason": "stop"}


def _garbage(turn: int) -> dict[str, Any]:
    kind = turn % 4
    if kind == 0:
        msg = _call(turn, "bash", '{"command": "ls -la ~' + _GARBAGE_TEXT)  # invalid JSON
    elif kind == 1:
        msg = _call(turn, "rm_everything_now", json.dumps({"target": "/"}))  # no such tool
    elif kind == 2:
        msg = _call(turn, "bash", json.dumps({"cmd": [3, None], "x": {"y": 1}}))  # wrong schema
    else:
        msg = {"role": "assistant", "content": _GARBAGE_TEXT * 8}
    return {"message": msg, "finish_reason": "tool_calls" if kind < 3 else "stop"}


def hostile_turn(name: str, messages: list[dict[str, Any]], tools: list[str]) -> Hostility:
    """The hostile persona ``name``'s next move in a known scenario."""
    turn = _turn(messages)
    if name == "escape":
        return Hostility(_scripted(ESCAPE, turn, tools))
    if name == "destroyer":
        return Hostility(_scripted(DESTROYER, turn, tools))
    if name == "garbage":
        return Hostility(_garbage(turn))
    if name == "slow":
        return Hostility(delay_s=True)
    if name == "echo":
        return Hostility(echo_key=True)
    raise KeyError(name)
