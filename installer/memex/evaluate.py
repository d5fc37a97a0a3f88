"""`memex eval DIR`: retrieval quality and latency of rag_search on a BEIR-format dataset.

DIR holds corpus.jsonl ({"_id", "title", "text"}), queries.jsonl ({"_id", "text"}) and
qrels/test.tsv (query-id, corpus-id, score; a header line). The corpus goes into a scratch
tenant (documents with uri = the corpus id), is embedded in the database, and every query runs
in every mode. Metrics: nDCG@10, recall@10, recall@100, MRR@10, latency p50/p95, and the HNSW
recall@10 of vector mode against an exact scan of the same space.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from tqdm import tqdm

from memex.dsn import connect
from memex.errors import MemexError

MODES = ("hybrid", "vector", "text")
TOP10 = "select chunk_id from memex.rag_search(%s, k => 10, mode => 'vector')"
DEPTH = 100


@dataclass
class Dataset:
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class ModeResult:
    ndcg10: list[float] = field(default_factory=list)
    recall10: list[float] = field(default_factory=list)
    recall100: list[float] = field(default_factory=list)
    mrr10: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        lat = sorted(self.latency_ms)
        return {
            "ndcg@10": statistics.fmean(self.ndcg10), "recall@10": statistics.fmean(self.recall10),
            "recall@100": statistics.fmean(self.recall100), "mrr@10": statistics.fmean(self.mrr10),
            "p50_ms": lat[len(lat) // 2], "p95_ms": lat[min(len(lat) - 1, int(len(lat) * 0.95))],
        }  # fmt: skip


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise MemexError(f"{path} is missing: a BEIR dataset has corpus.jsonl, queries.jsonl and "
                         "qrels/test.tsv")  # fmt: skip
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise MemexError(f"{path}:{number}: not JSON ({exc.msg})") from None
    return rows


def load_dataset(root: Path) -> Dataset:
    corpus = {str(r["_id"]): (str(r.get("title") or ""), str(r["text"]))
              for r in _jsonl(root / "corpus.jsonl")}  # fmt: skip
    queries = {str(r["_id"]): str(r["text"]) for r in _jsonl(root / "queries.jsonl")}
    qrels_path = root / "qrels" / "test.tsv"
    if not qrels_path.is_file():
        raise MemexError(f"{qrels_path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    for line in qrels_path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            qid, doc, score = line.split("\t")[:3]
            if int(score) > 0:
                qrels.setdefault(qid, {})[doc] = int(score)
    qrels = {q: rel for q, rel in qrels.items() if q in queries}
    if not qrels:
        raise MemexError(f"{qrels_path}: no judged query matches queries.jsonl")
    return Dataset(corpus, queries, qrels)


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant)


def mrr_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    return next((1 / (i + 1) for i, d in enumerate(ranked[:k]) if d in relevant), 0.0)


def _documents(rows: list[tuple[Any, ...]]) -> list[str]:
    """Corpus ids in rank order, each once (a document may have several chunks)."""
    seen: list[str] = []
    for (uri,) in rows:
        if uri is not None and uri not in seen:
            seen.append(str(uri))
    return seen


def _load(conn: psycopg.Connection[Any], tenant: str, data: Dataset) -> None:
    conn.execute("select memex.create_tenant(%s)", (tenant,))
    with conn.transaction():
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        for doc_id, (title, text) in tqdm(data.corpus.items(), desc="loading", unit="doc",
                                          file=sys.stderr):  # fmt: skip
            body = f"{title}\n\n{text}" if title else text
            conn.execute("select memex.upsert_document(%s, %s, %s)", (doc_id, body, title or None))
    conn.execute("call memex.embed_pending()")


def _hnsw_recall(conn: psycopg.Connection[Any], tenant: str, data: Dataset) -> float:
    """Recall@10 of the index scan (vector mode) against an exact scan of the same rows."""
    recalls = []
    for query in data.queries.values():
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            approx = {r[0] for r in conn.execute(TOP10, (query,))}
            conn.execute("set local enable_indexscan = off")
            conn.execute("set local enable_bitmapscan = off")
            exact = {r[0] for r in conn.execute(TOP10, (query,))}
        if exact:
            recalls.append(len(approx & exact) / len(exact))
    return statistics.fmean(recalls) if recalls else 1.0


def evaluate(dsn: str, root: Path, keep: bool = False) -> dict[str, Any]:
    data = load_dataset(root)
    tenant = f"memex-eval:{root.resolve().name}"
    report: dict[str, Any] = {"dataset": str(root), "documents": len(data.corpus),
                              "queries": len(data.qrels), "modes": {}}  # fmt: skip
    with connect(dsn) as conn:
        conn.execute("select memex.create_tenant(%s)", (tenant,))
        with conn.transaction():  # a scratch tenant: start from nothing
            conn.execute("select memex.set_tenant(%s)", (tenant,))
            conn.execute("delete from memex.documents where tenant_id = memex.current_tenant()")
        _load(conn, tenant, data)
        for mode in MODES:
            result = ModeResult()
            for qid, relevant in tqdm(data.qrels.items(), desc=mode, unit="query", file=sys.stderr):
                with conn.transaction():
                    conn.execute("select memex.set_tenant(%s)", (tenant,))
                    started = time.perf_counter()
                    rows = conn.execute(
                        "select metadata ->> 'uri' from memex.rag_search(%s, k => %s, mode => %s)",
                        (data.queries[qid], DEPTH, mode),
                    ).fetchall()
                    result.latency_ms.append((time.perf_counter() - started) * 1000)
                ranked = _documents(rows)
                result.ndcg10.append(ndcg_at(ranked, relevant, 10))
                result.recall10.append(recall_at(ranked, relevant, 10))
                result.recall100.append(recall_at(ranked, relevant, 100))
                result.mrr10.append(mrr_at(ranked, relevant, 10))
            report["modes"][mode] = result.summary()
        report["hnsw_recall@10"] = _hnsw_recall(conn, tenant, data)
        if not keep:
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                conn.execute("delete from memex.documents where tenant_id = memex.current_tenant()")
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"dataset {report['dataset']}: {report['documents']} documents, "
             f"{report['queries']} judged queries",
             f"{'mode':8} {'nDCG@10':>8} {'R@10':>6} {'R@100':>6} {'MRR@10':>7} {'p50 ms':>7} "
             f"{'p95 ms':>7}"]  # fmt: skip
    for mode, m in report["modes"].items():
        lines.append(f"{mode:8} {m['ndcg@10']:8.3f} {m['recall@10']:6.3f} {m['recall@100']:6.3f} "
                     f"{m['mrr@10']:7.3f} {m['p50_ms']:7.1f} {m['p95_ms']:7.1f}")  # fmt: skip
    lines.append(f"HNSW recall@10 vs exact scan: {report['hnsw_recall@10']:.3f}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MemexError("--plot needs matplotlib: pip install matplotlib") from None
    metrics = ["ndcg@10", "recall@10", "recall@100", "mrr@10"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(report["modes"])
    for i, (mode, values) in enumerate(report["modes"].items()):
        ax.bar([x + i * width for x in range(len(metrics))], [values[m] for m in metrics],
               width, label=mode)  # fmt: skip
    ax.set_xticks([x + width for x in range(len(metrics))], metrics)
    ax.set_ylim(0, 1)
    ax.legend()
    ax.set_title(f"memex eval: {Path(report['dataset']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
