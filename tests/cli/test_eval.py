"""`memex eval` on the bundled BEIR-format dataset, and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memex.cli import main
from memex.evaluate import mrr_at, ndcg_at, recall_at
from memex.paths import samples_dir

DATASET = samples_dir() / "beir-ops"


def test_metrics_by_hand() -> None:
    relevant = {"a": 2, "b": 1}
    assert ndcg_at(["a", "b", "x"], relevant, 10) == pytest.approx(1.0)
    assert ndcg_at(["x", "a"], relevant, 10) < 1.0
    assert recall_at(["x", "a"], relevant, 1) == 0.0
    assert recall_at(["x", "a"], relevant, 10) == 0.5
    assert mrr_at(["x", "y", "b"], relevant, 10) == pytest.approx(1 / 3)


def test_eval_prints_every_metric_and_hybrid_is_at_least_the_better_method(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "report.json"
    assert main(["eval", str(DATASET), "--dsn", db, "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[1].split()
    assert header == ["mode", "nDCG@10", "R@10", "R@100", "MRR@10", "p50", "ms", "p95", "ms"]
    assert "HNSW recall@10 vs exact scan" in table
    report = json.loads(out_json.read_text())
    modes = report["modes"]
    assert set(modes) == {"hybrid", "vector", "text"}
    best_single = max(modes["vector"]["ndcg@10"], modes["text"]["ndcg@10"])
    assert modes["hybrid"]["ndcg@10"] >= best_single - 1e-9
    assert report["hnsw_recall@10"] >= 0.95


def test_eval_names_a_dataset_without_qrels(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    assert main(["eval", str(tmp_path), "--dsn", db]) == 1
    assert "qrels/test.tsv is missing" in capsys.readouterr().err
