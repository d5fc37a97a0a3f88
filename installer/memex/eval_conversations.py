"""`memex eval DIR` on conversations: evidence retrieval over LoCoMo-format conversations.

LoCoMo (Maharana et al. 2024) is a JSON list of samples: `sample_id`; `conversation` with
`speaker_a`, `speaker_b`, `session_<N>` (turns `{"speaker", "dia_id", "text"}`, image turns
with a `blip_caption`) and `session_<N>_date_time` ("1:56 pm on 8 May, 2023"); `qa` with
`question`, `evidence` (dia ids `D<session>:<turn>`) and `category` (1 multi-hop, 2 temporal,
3 open-domain, 4 single-hop, 5 adversarial: left out, it has no evidence to find);
`session_summary` (one paragraph per session).

Loading (docs/evaluation.md): each sample is a tenant of its own, each session a conversation
(`<sample>-s<N>`, its date as created_date) and each turn a message `Speaker: text` (an image
turn adds `[image: caption]`) with seq = its turn number and the session's time as ts;
speaker_a speaks as `user`, speaker_b as `assistant`. With summaries, each session's summary is
an L1 summary covering all its turns. A question whose evidence does not name a loaded turn is
skipped (a few upstream entries are malformed), and counted.

Measured per setting, overall and per category: nDCG@10, R@5, R@10 and R@25 of the evidence
turns in `rag_search` over messages (ir-measures); the share of a question's evidence turns
inside `compose_context` at 500, 1,000 and 2,000 tokens (the turns its citations name); client
latency of the search.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ir_measures
import psycopg
from ir_measures import R, nDCG
from psycopg import sql
from psycopg.types.json import Jsonb

from memex.dsn import connect
from memex.errors import MemexError
from memex.evaluate import label, latency_summary, parse_setting
from memex.progress import progress

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
MEASURES = {"ndcg@10": nDCG @ 10, "recall@5": R @ 5, "recall@10": R @ 10, "recall@25": R @ 25}
BUDGETS = (500, 1000, 2000)
DEPTH = 25
# compose_context's k: enough hits that the token budget, not k, decides what fits
CONTEXT_K = 100
MESSAGES_ONLY = {"source_kind": ["message"]}
DIA_ID = re.compile(r"^D(\d+):(\d+)$")
SESSION_KEY = re.compile(r"^session_(\d+)$")
# compose_context's blocks: "[3] conversation: Session 2, conv-26-s2, 2023-05-08 13:56" opens a
# session, whose turns follow one a line: "#7 13:56 Caroline: ..."
CITATION = re.compile(r"^\[\d+\] (\w+): (.*)$")
TURN_LINE = re.compile(r"^#(\d+) ")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2})?$")


@dataclass
class Question:
    qid: str
    tenant: str
    text: str
    category: int
    evidence: set[str]


@dataclass
class Corpus:
    """The conversations by tenant (slug -> session number, title, date, messages, summary)."""

    sessions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    questions: list[Question] = field(default_factory=list)
    skipped: int = 0
    turns: int = 0


def is_locomo(root: Path) -> Path | None:
    """The LoCoMo JSON file a path names (the file, or a *.json of the directory) when it is a
    list of samples with `conversation` and `qa`; None otherwise (then DIR is BEIR)."""
    candidates = [root] if root.is_file() else sorted(root.glob("*.json")) if root.is_dir() else []
    for path in candidates:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if (
            isinstance(data, list)
            and data
            and all(isinstance(s, dict) and "conversation" in s and "qa" in s for s in data)
        ):
            return path
    return None


def session_time(text: str) -> datetime:
    """LoCoMo's "1:56 pm on 8 May, 2023" as a UTC time (the dataset gives no zone)."""
    try:
        return datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)
    except ValueError:
        raise MemexError(f"a LoCoMo session time must read like '1:56 pm on 8 May, 2023', "
                         f"not {text!r}") from None  # fmt: skip


def read_corpus(path: Path) -> Corpus:
    corpus = Corpus()
    for sample in json.loads(path.read_text(encoding="utf-8")):
        name = str(sample["sample_id"])
        tenant = f"memex-eval:locomo:{name}"
        conv = sample["conversation"]
        roles = {conv["speaker_a"]: "user", conv["speaker_b"]: "assistant"}
        summaries = sample.get("session_summary") or {}
        sessions, known = [], set()
        for key in sorted((k for k in conv if SESSION_KEY.match(k)), key=lambda k: int(k[8:])):
            number = int(key[8:])
            when = session_time(conv[f"{key}_date_time"])
            messages = []
            for seq, turn in enumerate(conv[key], 1):
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [image: {turn['blip_caption']}]"
                messages.append({"seq": seq, "role": roles.get(turn["speaker"], "user"),
                                 "name": turn["speaker"], "content": text,
                                 "ts": when.isoformat()})  # fmt: skip
                known.add(f"D{number}:{seq}")
            corpus.turns += len(messages)
            sessions.append({"slug": f"{name}-s{number}", "number": number, "date": when.date(),
                             "title": f"Session {number}", "messages": messages,
                             "summary": summaries.get(f"{key}_summary")})  # fmt: skip
        corpus.sessions[tenant] = sessions
        for index, qa in enumerate(sample["qa"]):
            if qa.get("category") not in CATEGORIES:
                continue
            evidence = {_dia_id(e) for e in qa.get("evidence") or []}
            if not evidence or not evidence <= known:
                corpus.skipped += 1
                continue
            corpus.questions.append(Question(f"{name}:{index}", tenant, str(qa["question"]),
                                             int(qa["category"]), evidence))  # fmt: skip
    if not corpus.questions:
        raise MemexError(f"{path}: no question of categories 1-4 with evidence that resolves")
    return corpus


def _dia_id(raw: Any) -> str:
    found = DIA_ID.match(str(raw).strip())
    return f"D{int(found[1])}:{int(found[2])}" if found else f"unresolved:{raw}"


def upsert_sessions(
    conn: psycopg.Connection[Any],
    tenant: str,
    sessions: list[dict[str, Any]],
    with_summaries: bool = False,
) -> None:
    """A tenant's sessions, in one transaction: each a conversation with its messages (the
    whole conversation: replace), and with its summary as an L1 summary when asked."""
    with conn.transaction():
        conn.execute("select memex.set_tenant(%s)", (tenant,))
        for s in sessions:
            conn.execute("select memex.upsert_conversation(%s, %s, %s)",
                         (s["slug"], s["title"], s["date"]))  # fmt: skip
            conn.execute("select memex.upsert_messages(%s, %s, replace => true)",
                         (s["slug"], Jsonb(s["messages"])))  # fmt: skip
            if with_summaries and s["summary"]:
                covers = [m["seq"] for m in s["messages"]]
                artefact = {"version": 2, "level": 1, "summaries": [
                    {"index": 0, "summary": s["summary"], "covers": covers}]}  # fmt: skip
                conn.execute("select * from memex.upsert_summaries(%s, %s)",
                             (s["slug"], Jsonb(artefact)))  # fmt: skip


def _load(conn: psycopg.Connection[Any], corpus: Corpus, with_summaries: bool) -> None:
    """Each tenant's sessions (upserts: a kept tenant reloads nothing), then what is pending
    embedded."""
    for tenant, sessions in progress(corpus.sessions.items(), desc="loading", unit="conv"):
        conn.execute("select memex.create_tenant(%s)", (tenant,))
        upsert_sessions(conn, tenant, sessions, with_summaries)
        # a scratch tenant loaded and deleted by earlier runs holds their dead postings: the
        # index rewritten from the chunks makes every run start from the same index
        conn.execute("call memex.optimize_text_index(%s)", (tenant,))
    conn.execute("call memex.embed_pending()")


def _search_sql(setting: dict[str, Any]) -> sql.Composed:
    args = [sql.SQL("{} => {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in setting]
    return sql.SQL(
        "select metadata ->> 'conversation', (metadata ->> 'seq')::integer"
        " from memex.rag_search({q}, k => {k}, filters => {f}, {args})"
    ).format(q=sql.Placeholder("query"), k=sql.Placeholder("depth"),
             f=sql.Placeholder("filters"), args=sql.SQL(", ").join(args))  # fmt: skip


def _turn(slug: str | None, seq: int | None) -> str | None:
    """The dia id of a message `<sample>-s<N>`, seq."""
    if slug is None or seq is None or "-s" not in slug:
        return None
    session = slug.rsplit("-s", 1)[1]
    return f"D{session}:{seq}" if session.isdigit() else None


def context_turns(text: str) -> set[str]:
    """The turns of compose_context's conversation blocks."""
    turns, slug = set(), None
    for line in text.splitlines():
        if cited := CITATION.match(line):
            parts = cited[2].split(", ")
            if len(parts) > 1 and ISO_DATE.match(parts[-1]):
                parts.pop()
            slug = parts[-1] if cited[1] == "conversation" else None
        elif slug and (turn := TURN_LINE.match(line)) and (found := _turn(slug, int(turn[1]))):
            turns.add(found)
    return turns


@dataclass
class SettingRun:
    ranking: dict[str, dict[str, float]] = field(default_factory=dict)
    inside: dict[int, dict[str, float]] = field(default_factory=dict)  # budget -> qid -> share
    latency_ms: list[float] = field(default_factory=list)


def _summary(run: SettingRun, questions: list[Question]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    groups: dict[str, list[Question]] = {"all": questions}
    for number, name in CATEGORIES.items():
        groups[f"{number} {name}"] = [q for q in questions if q.category == number]
    for group, members in groups.items():
        if not members:
            continue
        qrels = {q.qid: dict.fromkeys(q.evidence, 1) for q in members}
        ranking = {q.qid: run.ranking.get(q.qid, {}) for q in members}
        scores = ir_measures.calc_aggregate(list(MEASURES.values()), qrels, ranking)
        row = {name: float(scores[m]) for name, m in MEASURES.items()}
        for budget, shares in run.inside.items():
            row[f"context@{budget}"] = sum(shares[q.qid] for q in members) / len(members)
        row["questions"] = len(members)
        report[group] = row
    report["all"] |= latency_summary(run.latency_ms)
    return report


def evaluate_conversations(
    dsn: str,
    path: Path,
    keep: bool = False,
    compare: list[str] | None = None,
    with_summaries: bool = False,
) -> dict[str, Any]:
    corpus = read_corpus(path)
    settings = [parse_setting(s) for s in compare] if compare else [{"mode": "hybrid"}]
    report: dict[str, Any] = {
        "dataset": str(path), "kind": "conversations", "conversations": len(corpus.sessions),
        "sessions": sum(len(s) for s in corpus.sessions.values()), "turns": corpus.turns,
        "questions": len(corpus.questions), "skipped_questions": corpus.skipped,
        "with_summaries": with_summaries, "settings": {},
    }  # fmt: skip
    with connect(dsn) as conn:
        try:
            _load(conn, corpus, with_summaries)
            for setting in settings:
                report["settings"][label(setting)] = _summary(
                    _run(conn, corpus.questions, setting), corpus.questions
                )
        finally:
            if not keep:  # also when a question failed: no scratch rows left behind
                for tenant in corpus.sessions:
                    with conn.transaction():
                        conn.execute("select memex.set_tenant(%s)", (tenant,))
                        conn.execute("select memex.delete_conversation(c.slug) "
                                     "from memex.conversations as c "
                                     "where c.tenant_id = memex.current_tenant()")  # fmt: skip
    return report


def _run(conn: psycopg.Connection[Any], questions: list[Question], setting: dict[str, Any]
         ) -> SettingRun:  # fmt: skip
    run = SettingRun(inside={b: {} for b in BUDGETS})
    statement = _search_sql(setting)
    context = ("select memex.compose_context(%s, %s, k => %s, mode => %s, filters => %s, "
               "space => %s)")  # fmt: skip
    for q in progress(questions, desc=label(setting), unit="question"):
        with conn.transaction():
            conn.execute("select memex.set_tenant(%s)", (q.tenant,))
            started = time.perf_counter()
            params = {"query": q.text, "depth": DEPTH, "filters": Jsonb(MESSAGES_ONLY)}
            rows = conn.execute(statement, params | setting).fetchall()
            run.latency_ms.append((time.perf_counter() - started) * 1000)
            ranked: dict[str, float] = {}
            for slug, seq in rows:
                turn = _turn(slug, seq)
                if turn is not None and turn not in ranked:
                    ranked[turn] = float(len(rows) - len(ranked))
            run.ranking[q.qid] = ranked
            for budget in BUDGETS:
                row = conn.execute(context, (q.text, budget, CONTEXT_K, setting["mode"],
                                             Jsonb(MESSAGES_ONLY), setting.get("space")),
                                   ).fetchone()  # fmt: skip
                found = context_turns(str(row[0]) if row and row[0] else "")
                run.inside[budget][q.qid] = len(q.evidence & found) / len(q.evidence)
    return run


def format_conversation_report(report: dict[str, Any]) -> str:
    lines = [f"dataset {report['dataset']}: {report['conversations']} conversations, "
             f"{report['sessions']} sessions, {report['turns']} turns, {report['questions']} "
             f"questions of categories 1-4 ({report['skipped_questions']} skipped: evidence "
             f"that names no turn)" + (", with session summaries" if report["with_summaries"]
                                       else "")]  # fmt: skip
    budgets = " ".join(f"{'ctx@' + str(b):>8}" for b in BUDGETS)
    for name, groups in report["settings"].items():
        lines.append(f"\nsetting {name}: p50 {groups['all']['p50_ms']:.1f} ms, "
                     f"p95 {groups['all']['p95_ms']:.1f} ms")  # fmt: skip
        lines.append(f"{'questions':18} {'n':>4} {'nDCG@10':>8} {'R@5':>6} {'R@10':>6} "
                     f"{'R@25':>6} {budgets}")  # fmt: skip
        for group, m in groups.items():
            shares = " ".join(f"{m[f'context@{b}']:8.3f}" for b in BUDGETS)
            lines.append(f"{group:18} {m['questions']:4d} {m['ndcg@10']:8.3f} "
                         f"{m['recall@5']:6.3f} {m['recall@10']:6.3f} {m['recall@25']:6.3f} "
                         f"{shares}")  # fmt: skip
    return "\n".join(lines)
