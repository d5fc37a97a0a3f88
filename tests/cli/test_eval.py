"""`memex eval` on the bundled BEIR-format dataset, and its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from memex.cli import main
from memex.errors import MemexError
from memex.evaluate import Run, parse_setting
from memex.paths import samples_dir

DATASET = samples_dir() / "beir-ops"


def test_ndcg_has_linear_gain_as_trec_eval() -> None:
    run = Run(ranking={"q": {"b": 2.0, "a": 1.0, "x": 0.5}}, latency_ms=[1.0])
    report = run.summary({"q": {"a": 2, "b": 1}})
    # gains 1 then 2 (not 2^rel - 1): (1 + 2/log2 3) / (2 + 1/log2 3)
    assert report["ndcg@10"] == pytest.approx(0.8597, abs=1e-4)
    assert report["recall@10"] == 1.0 and report["mrr@10"] == 1.0


def test_settings_are_checked_by_name_and_type() -> None:
    assert parse_setting("text") == {"mode": "text"}
    assert parse_setting("hybrid,fusion=rrf,text_weight=2") == {
        "mode": "hybrid", "fusion": "rrf", "text_weight": 2.0}  # fmt: skip
    with pytest.raises(MemexError, match="unknown setting 'colour'"):
        parse_setting("colour=red")
    with pytest.raises(MemexError, match="bm25_k1 must be a float"):
        parse_setting("text,bm25_k1=high")


def test_eval_prints_every_metric_and_hybrid_is_at_least_the_better_method(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "report.json"
    assert main(["eval", str(DATASET), "--dsn", db, "--json", str(out_json)]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[1].split()
    assert header == ["setting", "nDCG@10", "R@10", "R@100", "MRR@10", "p50", "ms", "p95", "ms"]
    assert "HNSW recall@10 vs exact scan" in table
    report = json.loads(out_json.read_text())
    modes = report["modes"]
    assert set(modes) == {"hybrid", "vector", "text"}
    best_single = max(modes["vector"]["ndcg@10"], modes["text"]["ndcg@10"])
    assert modes["hybrid"]["ndcg@10"] >= best_single - 1e-9
    assert report["hnsw_recall@10"] >= 0.95
    with psycopg.connect(db) as conn:  # the scratch tenant's rows are gone
        assert conn.execute("select count(*) from memex.documents").fetchone() == (0,)


def test_compare_runs_each_setting_and_the_query_id_is_dropped(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A query whose own id is a corpus document (ArguAna's layout): BEIR drops that hit.
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text(
        '{"_id": "q1", "title": "", "text": "rotate the signing keys every ninety days"}\n'
        '{"_id": "d2", "title": "Keys", "text": "signing keys are rotated quarterly"}\n'
        '{"_id": "d3", "title": "", "text": "bread dough rises overnight"}\n'
    )
    (tmp_path / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "rotate the signing keys every ninety days"}\n'
    )
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t1\n")
    out_json = tmp_path / "report.json"
    assert main(["eval", str(tmp_path), "--dsn", db, "--json", str(out_json),
                 "--compare", "text", "hybrid,fusion=rrf"]) == 0  # fmt: skip
    report = json.loads(out_json.read_text())
    assert list(report["modes"]) == ["text", "hybrid,fusion=rrf"]
    assert report["modes"]["text"]["ndcg@10"] == 1.0, "q1 itself is not a hit"
    assert main(["eval", str(tmp_path), "--dsn", db, "--json", str(out_json),
                 "--compare", "text", "--keep-identical-ids"]) == 0  # fmt: skip
    assert json.loads(out_json.read_text())["modes"]["text"]["ndcg@10"] < 1.0
    capsys.readouterr()


def test_eval_names_a_dataset_without_qrels_or_not_in_beir_format(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    assert main(["eval", str(tmp_path), "--dsn", db]) == 1
    assert "qrels/test.tsv is missing" in capsys.readouterr().err
    (tmp_path / "corpus.jsonl").write_text('{"id": "d1", "body": "x"}\n')
    assert main(["eval", str(tmp_path), "--dsn", db]) == 1
    assert 'a BEIR line is an object with "_id" and "text"' in capsys.readouterr().err
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert main(["eval", str(tmp_path), "--dsn", db, "--split", "dev"]) == 1
    assert "qrels/dev.tsv is missing" in capsys.readouterr().err
