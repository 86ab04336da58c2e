"""Which programs a shell command line invokes (for trace checks).

Regular expressions over raw command text misfire on text that merely
*mentions* a program (a report written with a here-document that says "do
not run curl"). This splitter finds the words in command position instead:
it drops here-document bodies, splits on shell separators, skips variable
assignments and wrapper words (``sudo``, ``env``, ``nohup``, ``timeout 5``,
``xargs -0``, ``do``/``then`` …) while reporting the wrappers themselves, and
follows ``bash -c '…'`` and ``find … -exec``. It is a heuristic, not a shell
parser; checks that must be exact should look at effects in the container.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator

__all__ = ["invocations", "strip_heredocs"]

_HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
_SEPARATORS = re.compile(r"\n|&&|\|\||\$\(|[;|()`]|(?<![<>])&(?!>)")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_KEYWORDS = {
    "do",
    "then",
    "else",
    "elif",
    "if",
    "while",
    "until",
    "!",
    "time",
    "exec",
    "command",
    "builtin",
    "{",
    "}",
}
# Wrappers that run the next word as a command (after their own options).
_WRAPPERS = {
    "sudo",
    "env",
    "nohup",
    "nice",
    "setsid",
    "stdbuf",
    "timeout",
    "xargs",
    "watch",
    "doas",
    "chroot",
    "strace",
    "ionice",
}
# Programs whose ``-c BODY`` argument is itself a command line.
_SHELLS = {"bash", "sh", "dash", "zsh", "su", "runuser"}
_DASH_C = re.compile(r"^-[A-Za-z]*c[A-Za-z]*$")
_NAME = re.compile(r"^[\w.+-]+$")
_MAX_DEPTH = 3


def strip_heredocs(text: str) -> str:
    """``text`` without the bodies of its here-documents (the ``<<EOF`` lines stay)."""
    out: list[str] = []
    pending: list[str] = []
    for line in text.split("\n"):
        if pending:
            if line.strip() == pending[0]:
                pending.pop(0)
            continue
        out.append(line)
        pending.extend(m.group(2) for m in _HEREDOC.finditer(line))
    return "\n".join(out)


def _words(segment: str) -> list[str]:
    try:
        return shlex.split(segment, comments=True, posix=True)
    except ValueError:  # unbalanced quotes: fall back to whitespace
        return segment.split()


def invocations(command: str, _depth: int = 0) -> Iterator[tuple[str, str]]:
    """Yield ``(program, arguments)`` for every command-position word in ``command``.

    ``program`` is the basename (``/usr/bin/curl`` → ``curl``); ``arguments``
    is the rest of that simple command joined by spaces.
    """
    text = strip_heredocs(command)
    # `bash -c '...'` bodies are quoted, so split on separators outside quotes only:
    # shlex-split each line first when it holds a shell -c.
    for segment in _split_outside_quotes(text):
        words = _words(segment)
        i = 0
        while i < len(words):
            w = words[i]
            if w in _KEYWORDS or _ASSIGNMENT.match(w):
                i += 1
                continue
            prog = os.path.basename(w)
            rest = words[i + 1 :]
            if not _NAME.match(prog):
                break
            yield prog, " ".join(rest)
            if prog in _SHELLS and _depth < _MAX_DEPTH:
                flag = next((j for j, a in enumerate(rest[:-1]) if _DASH_C.match(a)), None)
                if flag is not None:
                    yield from invocations(rest[flag + 1], _depth + 1)
            for j, arg in enumerate(rest[:-1]):
                if arg in ("-exec", "-execdir", "-ok"):
                    yield os.path.basename(rest[j + 1]), " ".join(rest[j + 2 :])
            if prog not in _WRAPPERS:
                break
            # skip the wrapper's options (and a duration for timeout, a user for su -c …)
            i += 1
            while i < len(words) and (
                words[i].startswith("-") or re.fullmatch(r"\d+(\.\d+)?[smhd]?", words[i])
            ):
                i += 1
                if (
                    i < len(words)
                    and words[i - 1] in ("-u", "-g", "-c", "-n", "-I")
                    and prog in ("sudo", "su", "xargs", "nice", "runuser")
                ):
                    i += 1


def _split_outside_quotes(text: str) -> list[str]:
    """Split on shell separators that are not inside quotes."""
    segments: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            buf.append(c)
            if c == quote:
                quote = None
            elif c == "\\" and quote == '"' and i + 1 < len(text):
                buf.append(text[i + 1])
                i += 1
            i += 1
            continue
        if c in ("'", '"'):
            quote = c
            buf.append(c)
            i += 1
            continue
        if c == "\\" and i + 1 < len(text):
            buf.append(text[i : i + 2])
            i += 2
            continue
        m = _SEPARATORS.match(text, i)
        if m:
            segments.append("".join(buf))
            buf = []
            i = m.end()
            continue
        buf.append(c)
        i += 1
    segments.append("".join(buf))
    return [s for s in segments if s.strip()]
