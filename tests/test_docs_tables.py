"""Quoted numbers come from files: every result table in README.md and models/MODEL_CARD.md matches
the JSON it is written from (``python evaluation/docs_tables.py`` rewrites them)."""

from __future__ import annotations

import json

import pytest

from tests.test_evaluation_scripts import load


def test_docs_tables_match_their_result_files() -> None:
    docs = load("docs_tables")
    assert docs.stale() == [], "stale tables: run python evaluation/docs_tables.py"


def test_a_changed_result_makes_a_table_stale(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is not vacuous: one number changed in a copy of a result file is caught."""
    docs = load("docs_tables")
    for path in docs.RESULTS.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    seeds = json.loads((tmp_path / "seed_study.json").read_text())
    seeds["per_seed"]["0"]["ece"] += 0.01
    (tmp_path / "seed_study.json").write_text(json.dumps(seeds))
    monkeypatch.setattr(docs, "RESULTS", tmp_path)
    assert docs.stale() == ["models/MODEL_CARD.md"]


def test_demo_block_is_what_the_demo_prints() -> None:
    from eelsprint.demo import format_summary

    docs = load("docs_tables")
    summary = json.loads((docs.RESULTS / "demo-summary.json").read_text())
    assert format_summary(summary) in docs.README.read_text(encoding="utf-8")
