"""Write ``item_banks/<bank>/items.csv`` (columns ``id,text,text_source``) for banks with item text.

    python bench/build_item_text.py [--data ../shared/data] [--agentdojo-wheel PATH]

The text of each item is what a cold-start model reads (``agentcat predict-params``):

* ``alpaca_eval``, ``alpaca_eval_3level``: the AlpacaEval instruction (``text_snippet`` of the
  shared items file; 305 of 805 are cut at 120 characters: no PyPI package ships the
  instructions, the ``alpaca-eval`` package downloads them from a hub at run time).
  Data CC BY-NC 4.0 (attribution: tatsu-lab/alpaca_eval).
* ``xstest``: the prompt (never truncated in the shared file). CC-BY-4.0 (Röttger et al.).
* ``jailbreakbench``: the behaviour's goal (14 of 100 cut at 120 characters; the
  ``jailbreakbench`` package also reads them from a hub). MIT.
* ``agentdojo``: the full user-task prompt and, for injected items, the injection task's goal,
  read from the ``agentdojo`` wheel (MIT; ``pip download --no-deps agentdojo``) by parsing its
  task-suite sources (``ast``, no import of the package): the last suite version whose prompt
  starts with the shared snippet wins. Injected items read ``<prompt>\\n[injected goal] <goal>``.

``text_source`` says ``full`` or ``snippet`` (cut at 120 characters, ends with ``...``).
"""

from __future__ import annotations

import argparse
import ast
import csv
import io
import re
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNIPPET_BANKS = {
    "alpaca_eval": "alpaca_eval",
    "alpaca_eval_3level": "alpaca_eval",
    "xstest": "xstest",
    "jailbreakbench": "jailbreakbench",
}
INJECTION_MARK = "\n[injected goal] "


def _suite_strings(source: str, attr: str) -> dict[str, str]:
    """``{class name: value of its ``attr``}`` for string constants and f-strings of a module.

    f-strings may use module- and class-level string constants; they are evaluated with
    no builtins in a namespace holding only those constants.
    """
    tree = ast.parse(source)
    module_ns: dict[str, object] = {}
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            _assign(node, module_ns)
        if not isinstance(node, ast.ClassDef):
            continue
        ns = dict(module_ns)
        for stmt in node.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                _assign(stmt, ns)
        if isinstance(ns.get(attr), str):
            out[node.name] = str(ns[attr])
    return out


def _assign(stmt: ast.Assign | ast.AnnAssign, ns: dict[str, object]) -> None:
    target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
    if not isinstance(target, ast.Name) or stmt.value is None:
        return
    try:
        code = compile(ast.Expression(stmt.value), "<suite>", "eval")
        ns[target.id] = eval(code, {"__builtins__": {}}, ns)  # literals and f-strings only
    except Exception:  # a call, an import: not a text constant
        return


def _combinations(source: str) -> list[tuple[str, str, str, str | None]]:
    """``(task id, first, second, prompt or None)`` of each ``*_combined_task`` call.

    AgentDojo builds some user tasks from two others; their prompt is "Perform the
    following tasks in the order they are given: 1. <first> 2. <second>" unless given.
    """
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("create_combined_task", "update_combined_task")
        ):
            continue
        name, first, second = [*node.args, None, None, None][:3]
        ids = [_subscript_key(x) for x in (first, second)]
        if not (isinstance(name, ast.Constant) and all(ids)):
            continue
        prompt = next((k.value for k in node.keywords if k.arg == "prompt"), None)
        text = prompt.value if isinstance(prompt, ast.Constant) else None
        task = "user_task_" + str(name.value).removeprefix("UserTask")
        out.append((task, str(ids[0]), str(ids[1]), text))
    return out


def _subscript_key(node: ast.expr | None) -> str | None:
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    return None


def agentdojo_texts(wheel: Path) -> dict[tuple[str, str, str], str]:
    """``{(version, suite, task id): text}`` for user-task prompts and injection goals."""
    out: dict[tuple[str, str, str], str] = {}
    combined: list[tuple[str, str, tuple[str, str, str, str | None]]] = []
    pat = re.compile(r"agentdojo/default_suites/(v[\d_]+)/(\w+)/(user|injection)_tasks\.py$")
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            m = pat.search(name)
            if not m:
                continue
            version, suite, kind = m.groups()
            attr, prefix = (
                ("PROMPT", "user_task_") if kind == "user" else ("GOAL", "injection_task_")
            )
            cls_prefix = "UserTask" if kind == "user" else "InjectionTask"
            src = zf.read(name).decode("utf-8")
            for cls, text in _suite_strings(src, attr).items():
                if cls.startswith(cls_prefix) and cls[len(cls_prefix) :].isdigit():
                    out[(version, suite, prefix + cls[len(cls_prefix) :])] = text.strip()
            combined += [(version, suite, c) for c in _combinations(src)]
    for version, suite, (task, first, second, prompt) in sorted(
        combined, key=lambda c: _version_key(c[0])
    ):
        parts = [_latest(out, version, suite, t) for t in (first, second)]
        if prompt is None and None not in parts:
            prompt = (
                "Perform the following tasks in the order they are given: "
                f"1. {parts[0]} 2. {parts[1]}"
            )
        if prompt is not None:
            out[(version, suite, task)] = prompt.strip()
    return out


def _latest(
    texts: dict[tuple[str, str, str], str], version: str, suite: str, task: str
) -> str | None:
    """The text of ``task`` in ``version`` or the latest earlier version defining it."""
    found = [v for v, s, t in texts if s == suite and t == task]
    found = [v for v in found if _version_key(v) <= _version_key(version)]
    return texts[(max(found, key=_version_key), suite, task)] if found else None


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v[1:].split("_"))


def _match(
    texts: dict[tuple[str, str, str], str], suite: str, task: str, snippet: str
) -> str | None:
    """The latest version's text that the shared snippet is a prefix of (None if none is)."""
    stem = _norm(snippet.removesuffix("..."))
    versions = sorted({v for v, s, t in texts if s == suite and t == task}, key=_version_key)
    for v in reversed(versions):
        full = texts[(v, suite, task)]
        if _norm(full).startswith(stem) or not stem:
            return full
    return None


def _norm(s: str) -> str:
    return " ".join(s.split())


def _write(bank: str, rows: list[tuple[str, str, str]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "text", "text_source"])
    w.writerows(rows)
    path = REPO / "item_banks" / bank / "items.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _source_of(text: str) -> str:
    return "snippet" if text.endswith("...") else "full"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--agentdojo-wheel", type=Path, help="agentdojo-*.whl (pip download)")
    args = ap.parse_args(argv)
    for bank, folder in SNIPPET_BANKS.items():
        rows = [
            (r["item"], r["text_snippet"], _source_of(r["text_snippet"]))
            for r in _read(args.data / folder / "items.csv")
        ]
        print(f"{bank}: {len(rows)} items, {sum(s == 'snippet' for *_, s in rows)} cut", flush=True)
        _write(bank, rows)
    if args.agentdojo_wheel is None:
        print("agentdojo: skipped (pass --agentdojo-wheel)", file=sys.stderr)
        return 0
    texts = agentdojo_texts(args.agentdojo_wheel)
    rows = []
    unmatched = []
    for r in _read(args.data / "agentdojo" / "items.csv"):
        prompt = _match(texts, r["suite"], r["user_task_id"], r["text_snippet"])
        src = "full"
        if prompt is None:
            unmatched.append(r["item"])
            prompt, src = r["text_snippet"], _source_of(r["text_snippet"])
        text = prompt
        if r["injection_task_id"]:
            goal = _match(texts, r["suite"], r["injection_task_id"], r["injection_goal_snippet"])
            if goal is None:
                unmatched.append(r["item"] + " (goal)")
                goal, src = r["injection_goal_snippet"], "snippet"
            text = prompt + INJECTION_MARK + goal
        rows.append((r["item"], text, src))
    _write("agentdojo", rows)
    print(f"agentdojo: {len(rows)} items, {len(unmatched)} not found in the wheel: {unmatched}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
