"""Response CSV reading and validation against a bank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.data import (
    Responses,
    _read_plain_responses,
    _read_responses_csv,
    read_item_table,
    read_responses,
    write_responses,
)
from orchestrator.errors import DataError
from tests.conftest import REPO, make_bank


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "r.csv"
    p.write_text(text)
    return p


def test_reads_sparse_long_format(tmp_path: Path) -> None:
    r = read_responses(_csv(tmp_path, "subject,item,score\nm1,i1,2\nm1,i2,0\nm2,i2,1\n"))
    assert r.subjects == ("m1", "m2") and r.items == ("i1", "i2")
    assert r.subject_idx.tolist() == [0, 0, 1]
    assert r.item_idx.tolist() == [0, 1, 1]
    assert r.score.tolist() == [2, 0, 1]
    assert r.line.tolist() == [2, 3, 4]


def test_round_trip_with_awkward_ids(tmp_path: Path) -> None:
    rows = [("org/model,v2", 'q"1', 3), ("plain", "q2", 0)]
    p = write_responses(tmp_path / "w.csv", rows)
    r = read_responses(p)
    assert r.subjects == ("org/model,v2", "plain") and r.items == ('q"1', "q2")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"file is empty"),
        ("subject,item\nm,i\n", r":1: header .* lacks column\(s\) \['score'\]"),
        ("subject,itme,score\nm,i,1\n", r"lacks column\(s\) \['item'\] \(did you mean 'itme'\?\)"),
        ("subject,item,score\n", r"no observations"),
        ("subject,item,score\nm,i,1\nm,i\n", r":3: expected 3 fields, got 2"),
        ("subject,item,score\nm,i,1.5\n", r":2: score '1.5' is not an integer"),
        ("subject,item,score\nm,i,abc\n", r":2: score 'abc' is not an integer"),
        ("subject,item,score\nm,i,-1\n", r":2: score -1 is negative"),
        (
            "subject,item,score\nm,i,1\nx,j,0\nm,i,2\n",
            r":4: duplicate row .* \(first seen on line 2\)",
        ),
        ("subject,item,score\n,i,1\n", r":2: empty subject or item"),
        ('subject,item,score\n"m,i,1\n', r"malformed CSV|expected 3 fields"),
    ],
)
def test_malformed_csv_names_file_line_and_problem(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(DataError, match=match) as exc:
        read_responses(_csv(tmp_path, text))
    assert "r.csv" in str(exc.value)


def _same(a: Responses, b: Responses) -> bool:
    return (a.subjects, a.items, a.source) == (b.subjects, b.items, b.source) and all(
        np.array_equal(getattr(a, f), getattr(b, f))
        for f in ("subject_idx", "item_idx", "score", "line")
    )


def _fuzzed_file(rng: np.random.Generator) -> str:
    """A response CSV with random ids, order, line endings, padding and defects."""
    ids = ["m1", "org/m-2", "é3", "with space", "i5", "i6", "i7", "i8"]
    odd = ["a,b", ' q"', "", " pad "]
    n = int(rng.integers(1, 40))
    rows = []
    for pair in rng.choice(64, size=n, replace=False):
        subj, item = ids[pair // 8], ids[pair % 8]
        if rng.random() < 0.01:
            subj = odd[int(rng.integers(0, len(odd)))]
        rows.append([subj, item, str(rng.integers(0, 5)), "x"])
    header = ["subject", "item", "score", "note"]
    order = rng.permutation(4)
    lines = [",".join(header[c] for c in order)]
    lines += [",".join(_field(row[c]) for c in order) for row in rows]
    defect = rng.integers(0, 9)
    at = int(rng.integers(1, len(lines) + 1))
    if defect == 1:
        lines.insert(at, "")  # a blank line
    elif defect == 2:
        lines.insert(at, lines[min(at, len(lines) - 1)])  # maybe a duplicate
    elif defect == 3:
        lines.insert(at, "m9,i9,-1,x")
    elif defect == 4:
        lines.insert(at, "m9,i9,1")  # ragged
    elif defect == 5:
        lines.insert(at, "m9,i9,2.0,x")
    end = ["\n", "\r\n"][int(rng.integers(0, 2))]
    tail = ["", end, end * 2][int(rng.integers(0, 3))]
    return "\ufeff" * int(rng.integers(0, 2)) + end.join(lines) + tail


def _field(value: str) -> str:
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"') else value


@pytest.mark.parametrize("chunk_bytes", [1, 37, 1 << 20])
def test_the_fast_reader_agrees_with_the_csv_module_or_declines(
    tmp_path: Path, chunk_bytes: int
) -> None:
    """Over seeded random files (ids with quotes, commas, spaces and accents; CRLF; a BOM;
    blank, duplicate, ragged and bad-score lines), ``read_responses`` returns what the
    row-by-row csv reader returns or raises its error, and the fast reader takes every valid
    plain file and declines the rest, also when chunks split the file anywhere."""
    rng = np.random.default_rng(15)
    taken = 0
    for n in range(300):
        p = tmp_path / f"f{n}.csv"
        text = _fuzzed_file(rng)
        p.write_text(text, encoding="utf-8", newline="")
        try:
            slow: Responses | str = _read_responses_csv(p)
        except DataError as exc:
            slow = str(exc)
        fast = _read_plain_responses(p, chunk_bytes=chunk_bytes)
        if fast is not None:
            taken += 1
            assert isinstance(slow, Responses) and _same(fast, slow), text
        inner = text.replace("\r\n", "\n").rstrip("\n")
        plain = '"' not in text and "\n\n" not in inner and " pad " not in text
        assert fast is not None or not (plain and isinstance(slow, Responses)), text
        try:
            public: Responses | str = read_responses(p)
        except DataError as exc:
            public = str(exc)
        assert public == slow if isinstance(slow, str) else _same(public, slow)
    assert 50 < taken < 250  # both readers were exercised


def test_alignment_rejects_unknown_items_and_out_of_range_scores(tmp_path: Path) -> None:
    bank = make_bank(5, 4)
    ok = read_responses(_csv(tmp_path, "subject,item,score\nm,it001,3\nm,it004,0\n"))
    assert ok.for_bank(bank).bank_item.tolist() == [1, 4]
    bad = read_responses(_csv(tmp_path, "subject,item,score\nm,it001,3\nm,it0004,0\n"))
    with pytest.raises(DataError, match=r"r.csv:3: item 'it0004' is not in bank .*did you mean"):
        bad.for_bank(bank)
    bad = read_responses(_csv(tmp_path, "subject,item,score\nm,it001,4\n"))
    with pytest.raises(DataError, match=r"r.csv:2: score 4 for item 'it001' is outside .* 0..3"):
        bad.for_bank(bank)


def test_from_triples_applies_the_same_checks() -> None:
    with pytest.raises(DataError, match="duplicate row"):
        Responses.from_triples([("s", "i", 1), ("s", "i", 0)])


def test_reads_the_shipped_real_dataset() -> None:
    r = read_responses(REPO / "item_banks" / "agentdojo" / "responses.csv")
    assert (r.n_obs, len(r.subjects), len(r.items)) == (3298, 17, 194)
    assert set(r.score.tolist()) == {0, 1, 2}  # injected items: levels 0/1 merged


def _triples(resp: Responses) -> list[tuple[str, str, int, int]]:
    return [
        (resp.subjects[s], resp.items[i], int(x), int(line))
        for s, i, x, line in zip(
            resp.subject_idx, resp.item_idx, resp.score, resp.line, strict=True
        )
    ]


def test_drop_items_keeps_order_and_lines_and_optionally_empty_subjects() -> None:
    resp = Responses.from_triples(
        [("m1", "a", 1), ("m2", "b", 0), ("m1", "c", 2), ("m3", "b", 1), ("m2", "a", 0)]
    )
    kept = resp.drop_items(["b", "not-in-data"])
    assert kept.items == ("a", "c") and kept.subjects == ("m1", "m2", "m3")
    assert _triples(kept) == [("m1", "a", 1, 2), ("m1", "c", 2, 4), ("m2", "a", 0, 6)]
    trimmed = resp.drop_items(["b"], drop_empty_subjects=True)
    assert trimmed.subjects == ("m1", "m2")  # m3 answered only b
    assert _triples(trimmed) == _triples(kept)
    assert resp.drop_items([]) is resp


def test_keep_bank_items_reports_what_it_dropped_and_refuses_a_foreign_bank() -> None:
    bank = make_bank(3, 4)
    resp = Responses.from_triples([("m1", "it000", 1), ("m2", "zz", 0), ("m1", "it002", 3)])
    kept, dropped = resp.keep_bank_items(bank)
    assert dropped == ["zz"] and kept.items == ("it000", "it002") and kept.subjects == ("m1",)
    with pytest.raises(DataError, match="none of its items is in bank 'synthetic'"):
        Responses.from_triples([("m", "zz", 0)]).keep_bank_items(bank)


def test_item_table_gives_k_and_tags_per_item(tmp_path: Path) -> None:
    table = read_item_table(
        _csv(tmp_path, "item,n_categories,suite,kind\na,3,bank,\nb,2,slack,injected\n")
    )
    resp = Responses.from_triples([("m", "a", 2), ("m", "b", 1), ("m", "new", 4)])
    assert table.k_column() == "n_categories" and table.k_column("kind") == "kind"
    assert table.n_categories(resp).tolist() == [3, 2, 5]  # "new" is not in the table
    assert table.tags(resp.items, ["suite", "kind"]) == {
        "a": {"suite": "bank"},
        "b": {"suite": "slack", "kind": "injected"},
    }
    with pytest.raises(DataError, match=r"no column 'kinds' \(did you mean 'kind'\?\)"):
        table.n_categories(resp, "kinds")
    with pytest.raises(DataError, match=r"item 'a' has suite = 'bank', not an integer"):
        table.n_categories(resp, "suite")
    no_k = read_item_table(_csv(tmp_path, "item,suite\na,bank\n"))
    assert no_k.k_column() is None and no_k.n_categories(resp) is None
