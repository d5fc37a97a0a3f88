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


def _locomo_sample() -> list[dict[str, object]]:
    """One LoCoMo-format sample: two dated sessions, an image turn, and questions of every
    kind the loader meets (answerable, adversarial, evidence that names no turn)."""
    return [{
        "sample_id": "conv-t",
        "conversation": {
            "speaker_a": "Ana", "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a greyhound named Comet!"},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "I started learning the cello."},
            ],
            "session_2_date_time": "10:00 am on 20 June, 2023",
            "session_2": [
                {"speaker": "Ben", "dia_id": "D2:1", "text": "My first cello recital went well.",
                 "blip_caption": "a photo of a man holding a cello on a stage"},
                {"speaker": "Ana", "dia_id": "D2:2", "text": "Comet won a race at the park."},
            ],
            "session_3_date_time": "9:00 am on 1 July, 2023",  # a date without its session
        },
        "session_summary": {"session_1_summary": "Ana adopted Comet; Ben took up the cello.",
                            "session_2_summary": "Ben played a recital; Comet won a race."},
        "qa": [
            {"question": "What is the name of Ana's greyhound?", "answer": "Comet",
             "evidence": ["D1:1"], "category": 4},
            {"question": "Which instrument does Ben play at his recital?", "answer": "cello",
             "evidence": ["D1:2", "D2:1"], "category": 1},
            {"question": "What did Ana's cat eat?", "adversarial_answer": "x",
             "evidence": ["D1:1"], "category": 5},
            {"question": "When?", "answer": "?", "evidence": ["D9:99"], "category": 2},
        ],
    }]  # fmt: skip


def test_eval_reads_locomo_conversations_and_reports_evidence_recall_per_category(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "locomo.json").write_text(json.dumps(_locomo_sample()))
    out_json = tmp_path / "report.json"
    assert main(["eval", str(tmp_path), "--dsn", db, "--json", str(out_json), "--keep",
                 "--with-summaries", "--compare", "hybrid", "text"]) == 0  # fmt: skip
    table = capsys.readouterr().out
    assert "1 conversations, 2 sessions, 4 turns, 2 questions of categories 1-4 (1 skipped" in table
    report = json.loads(out_json.read_text())
    hybrid = report["settings"]["hybrid"]
    assert set(hybrid) == {"all", "1 multi-hop", "4 single-hop"}
    assert hybrid["4 single-hop"]["recall@5"] == 1.0, "the one evidence turn is found"
    assert hybrid["all"]["recall@25"] == 1.0, "every turn of this tiny corpus is in the top 25"
    assert hybrid["all"]["context@2000"] == 1.0, "2,000 tokens hold every turn it found"
    with psycopg.connect(db) as conn:  # --keep: the tenant's sessions, turns and summaries stay
        conn.execute("select memex.set_tenant('memex-eval:locomo:conv-t')")
        rows = conn.execute(
            "select c.slug, c.created_date::text, m.seq, m.role::text, m.content,"
            " m.ts = '2023-05-08 13:56:00+00'::timestamptz"
            " from memex.messages as m join memex.conversations as c on c.id ="
            " m.conversation_id and c.tenant_id = m.tenant_id"
            " order by c.slug, m.seq"
        ).fetchall()
        summaries = conn.execute("select covers::text from memex.summaries").fetchall()
    assert rows[0] == ("conv-t-s1", "2023-05-08", 1, "user",
                       "Ana: I adopted a greyhound named Comet!", True)  # fmt: skip
    assert rows[2][3:5] == ("assistant", "Ben: My first cello recital went well. "
                            "[image: a photo of a man holding a cello on a stage]")  # fmt: skip
    assert [r[0].replace(" ", "") for r in summaries] in (["[1,2]"] * 2, ["{1,2}"] * 2)


def test_a_locomo_file_with_a_bad_session_time_is_named() -> None:
    from memex.eval_conversations import context_turns, session_time

    with pytest.raises(MemexError, match="must read like '1:56 pm on 8 May, 2023'"):
        session_time("yesterday")
    cited = (
        "[1] conversation: Session 2, conv-26-s2, 2023-05-08\nsummary: Ben met Ann.\n"
        "#7 13:56 Ben: hi\n#8 13:57 Ann: hello\n\n"
        "[2] document: Notes, notes.md\n#9 not a turn"
    )
    assert context_turns(cited) == {"D2:7", "D2:8"}


def test_a_conversation_eval_leaves_no_scratch_rows(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(_locomo_sample()))
    assert main(["eval", str(path), "--dsn", db, "--compare", "text"]) == 0
    assert "setting text:" in capsys.readouterr().out
    with psycopg.connect(db) as conn:
        conn.execute("select memex.set_tenant('memex-eval:locomo:conv-t')")
        assert conn.execute("select count(*) from memex.messages").fetchone() == (0,)
        assert conn.execute("select count(*) from memex.conversations").fetchone() == (0,)
    assert main(["eval", str(DATASET), "--dsn", db, "--with-summaries"]) == 1
    assert "--with-summaries is for conversations" in capsys.readouterr().err
