"""`memex eval DIR`: retrieval quality and latency of rag_search on a BEIR-format dataset.

DIR holds corpus.jsonl ({"_id", "title", "text"}), queries.jsonl ({"_id", "text"}) and
qrels/<split>.tsv (query-id, corpus-id, score; a header line); a split's own queries may be in
queries-<split>.jsonl. The corpus goes into a scratch tenant (documents with uri = the corpus
id and their title), is embedded in the database, and every judged query runs in every setting
compared. Metrics are computed by ir-measures (pytrec_eval, i.e. trec_eval) as the published
BEIR tables are: nDCG@10 with linear gain, R@10, R@100, MRR@10 (RR@10); latency p50/p95 from
the client; and the HNSW recall@10 of vector mode against an exact scan of the same space.
As BEIR, MTEB and Anserini do, a hit whose id is the query's own id is dropped (ArguAna).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ir_measures
import psycopg
from ir_measures import RR, R, nDCG
from psycopg import sql

from memex.client.queries import SEARCH_OPTION_TYPES
from memex.dsn import connect
from memex.errors import MemexError
from memex.progress import progress

MODES = ("hybrid", "vector", "text")
TOP10 = "select chunk_id from memex.rag_search(%s, k => 10, mode => 'vector')"
DEPTH = 100
MEASURES = {"ndcg@10": nDCG @ 10, "recall@10": R @ 10, "recall@100": R @ 100, "mrr@10": RR @ 10}
# rag_search arguments a --compare setting may give, with their types.
SETTINGS: dict[str, type] = {"mode": str, **SEARCH_OPTION_TYPES}


@dataclass
class Dataset:
    corpus: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


@dataclass
class Run:
    """One setting's ranked documents per query, and its latencies."""

    ranking: dict[str, dict[str, float]] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)

    def summary(self, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
        scores = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, self.ranking)
        report = {name: float(scores[measure]) for name, measure in MEASURES.items()}
        return report | latency_summary(self.latency_ms)


def latency_summary(latency_ms: list[float]) -> dict[str, float]:
    """p50 and p95 of client latencies (the BEIR and the conversation evals)."""
    lat = sorted(latency_ms)
    return {"p50_ms": lat[len(lat) // 2], "p95_ms": lat[min(len(lat) - 1, int(len(lat) * 0.95))]}


def parse_setting(spec: str) -> dict[str, Any]:
    """`mode=hybrid,fusion=rrf` (or a bare mode) as rag_search arguments, checked by name."""
    setting: dict[str, Any] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            key, value = "mode", key
        key = key.strip()
        if key not in SETTINGS:
            raise MemexError(f"--compare {spec!r}: unknown setting {key!r}; "
                             f"known: {', '.join(SETTINGS)}")  # fmt: skip
        try:
            setting[key] = SETTINGS[key](value.strip())
        except ValueError:
            raise MemexError(
                f"--compare {spec!r}: {key} must be a {SETTINGS[key].__name__}"
            ) from None
    setting.setdefault("mode", "hybrid")
    return setting


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise MemexError(f"{path} is missing: a BEIR dataset has corpus.jsonl, queries.jsonl and "
                         "qrels/test.tsv")  # fmt: skip
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise MemexError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(row, dict) or "_id" not in row or "text" not in row:
                raise MemexError(f'{path}:{number}: a BEIR line is an object with "_id" and "text"')
            rows.append(row)
    return rows


def load_dataset(root: Path, split: str = "test") -> Dataset:
    corpus = {str(r["_id"]): (str(r.get("title") or ""), str(r["text"]))
              for r in _jsonl(root / "corpus.jsonl")}  # fmt: skip
    queries = {str(r["_id"]): str(r["text"]) for r in _jsonl(root / "queries.jsonl")}
    if (root / f"queries-{split}.jsonl").is_file():
        queries.update(
            {str(r["_id"]): str(r["text"]) for r in _jsonl(root / f"queries-{split}.jsonl")}
        )
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise MemexError(f"{qrels_path} is missing")
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines()[1:], 2):
        if line.strip():
            fields = line.split("\t")
            if len(fields) < 3 or not fields[2].strip().lstrip("-").isdigit():
                raise MemexError(f"{qrels_path}:{number}: expected query-id, corpus-id, score")
            qid, doc, score = fields[:3]
            if int(score) > 0:
                qrels.setdefault(qid, {})[doc] = int(score)
    qrels = {q: rel for q, rel in qrels.items() if q in queries}
    if not qrels:
        raise MemexError(f"{qrels_path}: no judged query matches the queries files")
    return Dataset(corpus, queries, qrels)


def _documents(rows: list[tuple[Any, ...]], query_id: str, drop_self: bool) -> dict[str, float]:
    """Corpus ids with a score that keeps rag_search's order: a document's rank is its best
    chunk's; the query's own id is dropped when asked."""
    ranked: dict[str, float] = {}
    for (uri,) in rows:
        if uri is None or str(uri) in ranked or (drop_self and str(uri) == query_id):
            continue
        ranked[str(uri)] = float(len(rows) - len(ranked))
    return ranked


def _load(conn: psycopg.Connection[Any], tenant: str, data: Dataset) -> None:
    """The corpus into the scratch tenant: idempotent upserts (a kept tenant reloads nothing),
    documents not in the corpus removed, then what is pending embedded."""
    with conn.transaction():
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        conn.execute("select memex.delete_document(d.uri) from memex.documents as d "
                     "where d.tenant_id = memex.current_tenant() and not d.uri = any(%s)",
                     (list(data.corpus),))  # fmt: skip
        for doc_id, (title, text) in progress(data.corpus.items(), desc="loading", unit="doc"):
            conn.execute("select memex.upsert_document(%s, %s, %s)", (doc_id, text, title or None))
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


def _search_sql(setting: dict[str, Any]) -> sql.Composed:
    """rag_search with the setting's arguments; one chunk per document (max_per_document 1,
    unless the setting says otherwise), so the k = 100 rows rank 100 documents."""
    names = [*setting, *(["max_per_document"] if "max_per_document" not in setting else [])]
    args = [sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in names]
    return sql.SQL("select metadata ->> 'uri' from memex.rag_search({q}, k => {k}, {args})").format(
        q=sql.Placeholder("query"), k=sql.Placeholder("depth"), args=sql.SQL(", ").join(args)
    )


def label(setting: dict[str, Any]) -> str:
    """A setting as --compare writes it: `hybrid,fusion=rrf`."""
    return ",".join(f"{k}={v}" if k != "mode" else str(v) for k, v in setting.items())


def evaluate(
    dsn: str,
    root: Path,
    keep: bool = False,
    split: str = "test",
    compare: list[str] | None = None,
    drop_self: bool = True,
) -> dict[str, Any]:
    data = load_dataset(root, split)
    settings = [parse_setting(s) for s in compare] if compare else [{"mode": m} for m in MODES]
    tenant = f"memex-eval:{root.resolve().name}"
    report: dict[str, Any] = {"dataset": str(root), "split": split, "documents": len(data.corpus),
                              "queries": len(data.qrels), "modes": {}}  # fmt: skip
    with connect(dsn) as conn:
        conn.execute("select memex.create_tenant(%s)", (tenant,))
        try:
            _load(conn, tenant, data)
            for setting in settings:
                run = Run()
                statement = _search_sql(setting)
                for qid in progress(data.qrels, desc=label(setting), unit="query"):
                    with conn.transaction():
                        conn.execute("select memex.set_tenant(%s)", (tenant,))
                        started = time.perf_counter()
                        rows = conn.execute(
                            statement,
                            {"query": data.queries[qid], "depth": DEPTH, "max_per_document": 1}
                            | setting,
                        ).fetchall()
                        run.latency_ms.append((time.perf_counter() - started) * 1000)
                    run.ranking[qid] = _documents(rows, qid, drop_self)
                report["modes"][label(setting)] = run.summary(data.qrels)
            report["hnsw_recall@10"] = _hnsw_recall(conn, tenant, data)
        finally:
            if not keep:  # also when a query failed: no scratch rows left behind
                with conn.transaction():
                    conn.execute("select memex.set_tenant(%s)", (tenant,))
                    conn.execute(
                        "select memex.delete_document(d.uri) from memex.documents as d"
                        " where d.tenant_id = memex.current_tenant()"
                    )
    return report


def format_report(report: dict[str, Any]) -> str:
    width = max([8, *(len(m) for m in report["modes"])])
    lines = [f"dataset {report['dataset']} ({report.get('split', 'test')}): "
             f"{report['documents']} documents, {report['queries']} judged queries",
             f"{'setting':{width}} {'nDCG@10':>8} {'R@10':>6} {'R@100':>6} {'MRR@10':>7} "
             f"{'p50 ms':>7} {'p95 ms':>7}"]  # fmt: skip
    for mode, m in report["modes"].items():
        lines.append(f"{mode:{width}} {m['ndcg@10']:8.3f} {m['recall@10']:6.3f} "
                     f"{m['recall@100']:6.3f} {m['mrr@10']:7.3f} {m['p50_ms']:7.1f} "
                     f"{m['p95_ms']:7.1f}")  # fmt: skip
    lines.append(f"HNSW recall@10 vs exact scan: {report['hnsw_recall@10']:.3f}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """nDCG@10 and p50 latency per setting, side by side."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MemexError("--plot needs matplotlib: pip install matplotlib") from None
    names = list(report["modes"])
    values = report["modes"]
    fig, (quality, latency) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 2))
    quality.barh(names, [values[n]["ndcg@10"] for n in names], color="tab:blue")
    quality.set_xlabel("nDCG@10")
    quality.invert_yaxis()
    latency.barh(names, [values[n]["p50_ms"] for n in names], color="tab:orange",
                 label="p50", xerr=None)  # fmt: skip
    latency.barh(names, [values[n]["p95_ms"] - values[n]["p50_ms"] for n in names],
                 left=[values[n]["p50_ms"] for n in names], color="tab:orange", alpha=0.35,
                 label="p95")  # fmt: skip
    latency.set_xlabel("latency, ms (client)")
    latency.invert_yaxis()
    latency.legend()
    fig.suptitle(f"memex eval: {Path(report['dataset']).name} ({report.get('split', 'test')})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
