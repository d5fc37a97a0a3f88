"""memex on a real Citus cluster (a coordinator and two workers on this machine, tests/citus.py),
distributed by `memex install --citus`, against a single node holding the same data; and RLS
on every shard for an application's login role. Skipped where Citus is not installed (`make
citus CITUS_SRC=dir`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from memex.citus import REFERENCE_TABLES, TENANT_TABLES, distribute, is_distributed
from memex.citus_online import SAVED_KEYS, distribute_online, rebalance
from memex.errors import MemexError
from memex.install import install
from tests.citus import WORKERS, CitusCluster, citus_cluster, citus_missing, empty_database

pytestmark = pytest.mark.skipif(citus_missing() is not None, reason=str(citus_missing()))

DOCUMENTS = {
    "acme": {
        "backups.md": "PostgreSQL backups run nightly with pg_dump; WAL archiving covers the "
        "hours between, and a restore is rehearsed every month.",
        "cats.md": "The office cat sleeps on the server rack, where the air is warm.",
        "vacuum.md": "Autovacuum keeps table bloat in check; tune its cost limit on busy tables.",
    },
    "globex": {
        "widgets.md": "Globex sells widgets, and backups of widget designs live in a vault.",
        "hr.md": "Holidays are booked through the HR portal two weeks ahead.",
    },
}
QUERIES = ("nightly backups", "warm cat", "table bloat", "widget vault", "holiday booking")
APP_LOGIN = "memex_citus_app"  # an application's login role, member of memex_app
ADMIN_LOGIN = "memex_citus_admin"  # an administrator's login role, member of memex_admin
SINGLE_APP = "memex_single_app"  # the same as APP_LOGIN, on the single node


@pytest.fixture(scope="module")
def citus() -> Iterator[CitusCluster]:
    """The cluster with memex installed and distributed, DOCUMENTS loaded and embedded, and
    APP_LOGIN created (Citus creates it on the workers too)."""
    with citus_cluster() as cluster:
        install(cluster.dsn(), say=lambda _m: None)
        assert distribute(cluster.dsn(), say=lambda _m: None)
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            for role, group in ((APP_LOGIN, "memex_app"), (ADMIN_LOGIN, "memex_admin")):
                conn.execute(sql.SQL("create role {} login in role {}").format(
                    sql.Identifier(role), sql.Identifier(group)))  # fmt: skip
        _load(cluster.dsn(), cluster.coordinator.dsn(user=ADMIN_LOGIN))
        yield cluster


def _load(dsn: str, admin_dsn: str | None = None) -> None:
    """DOCUMENTS, then CALL memex.embed_pending() (as an administrator's login role when given:
    RLS applies to it on the workers, as it does not to the superuser)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tenant, docs in DOCUMENTS.items():
            conn.execute("select memex.create_tenant(%s)", (tenant,))
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                for uri, text in docs.items():
                    conn.execute("select memex.upsert_document(%s, %s)", (uri, text))
    with psycopg.connect(admin_dsn or dsn, autocommit=True) as conn:
        conn.execute("call memex.embed_pending()")


def _answers(dsn: str) -> dict[str, Any]:
    found: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for tenant in DOCUMENTS:
            with conn.transaction():
                conn.execute("select memex.set_tenant(%s)", (tenant,))
                for mode in ("hybrid", "vector", "text"):
                    for q in QUERIES:
                        found[f"{tenant} {mode} {q}"] = conn.execute(
                            "select metadata ->> 'uri', round(score::numeric, 6)::text"
                            " from memex.rag_search(%s, k => 3, mode => %s)", (q, mode),
                        ).fetchall()  # fmt: skip
                found[f"{tenant} context"] = conn.execute(
                    "select memex.compose_context('nightly backups', 300)").fetchone()  # fmt: skip
                found[f"{tenant} text index"] = conn.execute(
                    "select language, sum(chunks), sum(tokens) from memex.text_segments"
                    " where tenant_id = memex.current_tenant() group by 1"
                ).fetchall()
    return found


def test_install_citus_distributes_by_tenant_and_a_rerun_changes_nothing(
    citus: CitusCluster,
) -> None:
    with psycopg.connect(citus.dsn()) as conn:
        assert conn.execute("select count(*) from citus_get_active_worker_nodes()").fetchone() == (
            WORKERS,
        )
        kinds = dict(conn.execute(
            "select logicalrelid::regclass::text, partmethod::text || ':' || colocationid"
            " from pg_dist_partition").fetchall())  # fmt: skip
    tenant_kinds = {kinds[f"memex.{t}"] for t in TENANT_TABLES}
    assert len(tenant_kinds) == 1 and next(iter(tenant_kinds)).startswith("h:")  # one group
    assert all(kinds[f"memex.{t}"].startswith("n:") for t in REFERENCE_TABLES)
    assert "memex.worker_heartbeats" not in kinds  # bookkeeping stays on the coordinator
    report = install(citus.dsn(), say=lambda _m: None)
    assert not report.migrations_applied
    assert not distribute(citus.dsn(), say=lambda _m: None)


def test_the_workflow_on_citus_equals_a_single_node(citus: CitusCluster, db: str) -> None:
    """Upserts, CALL embed_pending (every pending chunk embedded: the tenant reaches the
    workers inside a CALL), searches in every mode, compose_context, the text index's
    statistics, and a delete_document: the same on both."""
    _load(db)
    for dsn in (citus.dsn(), db):
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select memex.pending_count()").fetchone() == (0,)
            assert conn.execute("select count(*) from memex.embeddings").fetchone() == (5,)
    assert _answers(citus.dsn()) == _answers(db)
    for dsn in (citus.dsn(), db):
        with psycopg.connect(dsn) as conn:
            conn.execute("select memex.set_tenant('acme')")
            assert conn.execute("select memex.delete_document('cats.md')").fetchone() == (True,)
            conn.commit()
    assert _answers(citus.dsn()) == _answers(db)


OPS_CHAT = [
    {"role": "user", "name": "Ann", "content": "When do the nightly backups run?"},
    {"role": "assistant", "content": "Nightly, at two, with WAL archiving in between."},
    {"role": "user", "name": "Ann", "content": "And who rehearses a restore?"},
]
CHAT_SUMMARY = {"version": 2, "level": 1, "summaries": [
    {"index": 0, "summary": "Ann asked when backups run and who rehearses restores.",
     "covers": [1, 2, 3]}]}  # fmt: skip


def _conversation_answers(dsn: str, app: str) -> dict[str, Any]:
    """Tenant initech's conversation with its summary, written and searched by `app`, an
    application's login role (RLS applies to it, as it does not to the superuser)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memex.create_tenant('initech')")
    found: dict[str, Any] = {}
    with psycopg.connect(app, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("select memex.set_tenant('initech')")
            conn.execute("select memex.upsert_conversation('ops')")
            conn.execute("select memex.upsert_messages('ops', %s)", (Jsonb(OPS_CHAT),))
            conn.execute("select * from memex.upsert_summaries('ops', %s)", (Jsonb(CHAT_SUMMARY),))
        with conn.transaction():
            conn.execute("select memex.set_tenant('initech')")
            for mode in ("hybrid", "text"):
                for filters in ({}, {"source_kind": ["message"]}):
                    found[f"{mode} {filters}"] = conn.execute(
                        "select source_kind, content, round(score::numeric, 6)::text"
                        " from memex.rag_search('nightly backups', k => 5, mode => %s,"
                        " filters => %s)", (mode, Jsonb(filters))).fetchall()  # fmt: skip
            found["context"] = conn.execute(
                "select memex.compose_context('nightly backups', 300)").fetchone()  # fmt: skip
    return found


def test_a_tenant_with_a_summary_searched_as_an_application_equals_a_single_node(
    citus: CitusCluster, db: str
) -> None:
    """Citus 13.2.2's planner crashed the coordinator (signal 11) on memex._search's fusion
    statement when it outer-joined a distributed table to the unnested candidates under RLS,
    with a summary in the tenant (docs/scale.md): the statement now reads only arrays."""
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(SINGLE_APP)))
        conn.execute(sql.SQL("create role {} login in role memex_app").format(
            sql.Identifier(SINGLE_APP)))  # fmt: skip
    try:
        on_citus = _conversation_answers(citus.dsn(), citus.coordinator.dsn(user=APP_LOGIN))
        single = _conversation_answers(db, make_conninfo(db, user=SINGLE_APP))
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("drop role {}").format(sql.Identifier(SINGLE_APP)))
    assert on_citus == single
    assert {row[0] for row in on_citus["hybrid {}"]} == {"message", "summary"}


def test_rls_isolates_tenants_on_every_shard(citus: CitusCluster) -> None:
    """As an application's login role (a member of memex_app: Citus reaches the workers as the
    role that logged in, and memex_app itself cannot log in) with tenant A set: 0 rows of B in
    every tenant table, through the coordinator and by direct shard-name queries on the
    workers; B's rows are there (the superuser counts them)."""
    with psycopg.connect(citus.dsn(), autocommit=True) as conn:
        ids = dict(conn.execute("select name, id::text from memex.tenants").fetchall())
        shards = conn.execute(
            "select table_name::text, shard_name, nodeport from citus_shards"
            " where table_name::text = any(%s)", ([f"memex.{t}" for t in TENANT_TABLES],)
        ).fetchall()  # fmt: skip
    assert len(shards) >= 32 * len(TENANT_TABLES)
    acme, globex = ids["acme"], ids["globex"]
    coordinator = citus.coordinator.dsn(user=APP_LOGIN)
    with psycopg.connect(coordinator) as app:
        app.execute("select memex.set_tenant('acme')")
        for table in TENANT_TABLES:
            q = sql.SQL("select count(*) filter (where tenant_id = %s), count(*) from memex.{}")
            mine_and_all = app.execute(q.format(sql.Identifier(table)), (globex,)).fetchone()
            assert mine_and_all is not None and mine_and_all[0] == 0, table
    ports = {node.port: node for node in citus.workers}
    seen_b = 0
    for _table, shard, port in shards:
        node = ports[int(port)]
        name = sql.Identifier(*str(shard).split("."))
        with psycopg.connect(node.dsn(user=APP_LOGIN), autocommit=True) as app:
            app.execute("select set_config('memex.tenant_id', %s, false)", (acme,))
            rows = app.execute(sql.SQL("select tenant_id::text from {}").format(name)).fetchall()
            assert {r[0] for r in rows} <= {acme}, shard
        with psycopg.connect(node.dsn(), autocommit=True) as su:
            seen_b += su.execute(sql.SQL("select count(*) from {} where tenant_id = %s").format(
                name), (globex,)).fetchone()[0]  # type: ignore[index]  # fmt: skip
    assert seen_b > 0  # B's rows exist on the shards: the zeros above are RLS at work


def test_every_statement_of_the_workflow_routes_to_one_shard_group(citus: CitusCluster) -> None:
    """citus.multi_task_query_log_level = error makes any statement that Citus would split over
    several shards fail: upserts, every search form, compose_context, delete_document and CALL
    embed_pending each touch one tenant's shard group only (the tenant bound as a value)."""
    with psycopg.connect(citus.dsn(), autocommit=True) as conn:
        conn.execute("set citus.multi_task_query_log_level = error")
        with conn.transaction():
            conn.execute("select memex.set_tenant('acme')")
            conn.execute("select memex.upsert_document('z.md', 'Zebra crossings and nightly "
                         "backups of the zoo''s records.')")  # fmt: skip
            conn.execute("select memex.upsert_conversation('chat')")
            conn.execute("select memex.upsert_messages('chat', %s)", (
                '[{"role": "user", "name": "Ann", "content": "When do backups run?"},'
                ' {"role": "assistant", "content": "Nightly, at two."}]',))  # fmt: skip
        conn.execute("call memex.embed_pending()")
        with conn.transaction():
            conn.execute("select memex.set_tenant('acme')")
            for args in ("", ", mode => 'text'", ", mode => 'vector'",
                         ", diversity => 0.5, max_per_document => 1",
                         ", filters => '{\"source_kind\": [\"message\"]}'"):  # fmt: skip
                assert conn.execute(f"select count(*) from memex.rag_search('nightly backups'"
                                    f", k => 3{args})").fetchone() != (0,), args  # fmt: skip
            assert conn.execute("select memex.compose_context('nightly backups', 300)"
                                ).fetchone() is not None  # fmt: skip
            assert conn.execute("select memex.delete_document('z.md')").fetchone() == (True,)
            assert conn.execute("select memex.delete_conversation('chat')").fetchone() == (True,)


def test_set_tenant_reaches_the_workers_in_a_do_block_as_the_application(
    citus: CitusCluster,
) -> None:
    """set_tenant inside a DO block (autocommit: no explicit transaction) as an application's
    login role: the write lands on the tenant's shards and reads back through RLS."""
    with psycopg.connect(citus.coordinator.dsn(user=APP_LOGIN), autocommit=True) as app:
        app.execute(
            "do $$ begin perform memex.set_tenant('globex'); "
            "perform memex.upsert_document('do.md', 'Written inside a DO block.'); end $$"
        )
        with app.transaction():
            app.execute("select memex.set_tenant('globex')")
            uris = {r[0] for r in app.execute("select uri from memex.documents").fetchall()}
    assert "do.md" in uris and uris <= set(DOCUMENTS["globex"]) | {"do.md"}


def test_delete_tenant_on_citus_removes_its_rows_from_every_shard(citus: CitusCluster) -> None:
    """CALL memex.delete_tenant commits batch by batch, each routed to the tenant's shard group
    (the multi-shard guard on); afterwards no table holds a row of it, the others keep theirs."""
    with psycopg.connect(citus.dsn(), autocommit=True) as conn:
        conn.execute("select memex.create_tenant('initech')")
        with conn.transaction():
            conn.execute("select memex.set_tenant('initech')")
            for i in range(5):
                text = f"TPS report number {i}, with its cover sheet."
                conn.execute("select memex.upsert_document(%s, %s)", (f"tps-{i}.md", text))
        conn.execute("call memex.embed_pending()")
        victim = conn.execute("select id from memex.tenants where name = 'initech'").fetchone()
        assert victim is not None
        others = conn.execute("select count(*) from memex.chunks where tenant_id <> %s",
                              (victim[0],)).fetchone()  # fmt: skip
        conn.execute("set citus.multi_task_query_log_level = error")
        conn.execute("call memex.delete_tenant('initech', confirm => 'initech')")
        conn.execute("reset citus.multi_task_query_log_level")
        for table in TENANT_TABLES:
            count = sql.SQL("select count(*) from memex.{} where tenant_id = %s")
            left = conn.execute(count.format(sql.Identifier(table)), (victim[0],)).fetchone()
            assert left == (0,), table
        assert conn.execute("select count(*) from memex.chunks").fetchone() == others


TABLES = [f"memex.{t}" for t in (*REFERENCE_TABLES, *TENANT_TABLES)]


def _row_security(dsn: str) -> set[tuple[object, ...]]:
    """Each memex table and kind of shard (its name without the shard id): RLS on, forced."""
    with psycopg.connect(dsn) as conn:
        return set(conn.execute(
            "select regexp_replace(relname, '_[0-9]+$', ''), relrowsecurity, relforcerowsecurity"
            " from pg_class where relnamespace = 'memex'::regnamespace and relkind = 'r'"
        ))  # fmt: skip


# memex's foreign keys, not those of the reference tables' shards on the coordinator
MEMEX_KEYS = """select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
  from pg_constraint where contype = 'f' and conrelid::regclass::text = any(%s)"""


LIVE_CHAT = "live-chat"


def _turn(step: int) -> str:
    return f"Ann: turn {step}, written while the tables move."


class Traffic:
    """An application's login role acting for acme in a loop while tables move: upserts a
    document, deletes the previous one every third step (and any of `also_delete()`), appends a
    message to a conversation and, every fifth step, rewrites its summary of the last turns;
    then searches (in a transaction of its own). A statement at the instant a table switches can
    fail (docs/scale.md): like an application, it retries, up to 5 times."""

    def __init__(self, dsn: str, also_delete: Callable[[], list[str]] = list) -> None:
        self.dsn, self.also_delete = dsn, also_delete
        self.written: list[str] = []
        self.deleted: list[str] = []
        self.retried: list[str] = []
        self.failures: list[str] = []
        self.searched = self.searches_refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        with psycopg.connect(self.dsn) as app:
            while not self.stop.is_set():
                uri = f"live-{len(self.written)}.md"
                doomed = [self.written[-1]] if len(self.written) % 3 == 2 else []
                doomed += self.also_delete()
                for _attempt in range(5):
                    try:
                        with app.transaction():
                            app.execute("select memex.set_tenant('acme')")
                            for gone in doomed:
                                app.execute("select memex.delete_document(%s)", (gone,))
                            app.execute("select memex.upsert_document(%s, 'Written while"
                                        " the tables move.')", (uri,))  # fmt: skip
                            self._converse(app, len(self.written))
                        break
                    except psycopg.Error as error:
                        self.retried.append(f"{error.sqlstate} {str(error).splitlines()[0]}")
                else:
                    self.failures.append(f"{uri}: 5 attempts failed")
                    return
                self.written.append(uri)
                self.deleted.extend(doomed)
                self._search(app)

    @staticmethod
    def _converse(app: psycopg.Connection[tuple[Any, ...]], step: int) -> None:
        """Turn `step` (seq step + 1) of LIVE_CHAT, appended as an agent does, one at a time."""
        app.execute("select memex.upsert_conversation(%s)", (LIVE_CHAT,))
        app.execute("select memex.upsert_messages(%s, %s)", (LIVE_CHAT, Jsonb(
            [{"role": "user", "name": "Ann", "content": _turn(step)}])))  # fmt: skip
        if step % 5 == 4:
            covers = list(range(step - 3, step + 2))
            summary = {"index": 0, "summary": f"Ann counted to {step}.", "covers": covers}
            app.execute(
                "select * from memex.upsert_summaries(%s, %s)",
                (LIVE_CHAT, Jsonb({"version": 2, "level": 1, "summaries": [summary]})),
            )

    def _search(self, app: psycopg.Connection[tuple[Any, ...]]) -> None:
        try:
            with app.transaction():
                app.execute("select memex.set_tenant('acme')")
                app.execute("select * from memex.rag_search('nightly backups', k => 3,"
                            " mode => 'text')").fetchall()  # fmt: skip
            self.searched += 1
        except psycopg.errors.ObjectNotInPrerequisiteState:
            self.searches_refused += 1  # memex is being distributed: searches wait
        except psycopg.Error as error:
            self.retried.append(f"{error.sqlstate} {str(error).splitlines()[0]}")

    def check(self, dsn: str, steps: list[str]) -> None:
        """No write lost, a retry at most per table moved, acme's documents as written."""
        assert not self.failures, "\n".join([*self.failures, *self.retried, *steps])
        assert len(self.retried) <= len(TABLES), self.retried
        print(f"{len(self.written)} writes, {len(self.retried)} retried: "
              f"{sorted(set(self.retried))}; {self.searched} searches, "
              f"{self.searches_refused} refused")  # fmt: skip
        with psycopg.connect(dsn) as conn:
            conn.execute("select memex.set_tenant('acme')")
            acme = "select uri from memex.documents where tenant_id = memex.current_tenant()"
            uris = {r[0] for r in conn.execute(acme)}
            turns = conn.execute(
                "select m.seq, m.content from memex.messages as m join memex.conversations as c"
                " on c.tenant_id = m.tenant_id and c.id = m.conversation_id"
                " where c.tenant_id = memex.current_tenant() and c.slug = %s order by m.seq",
                (LIVE_CHAT,)).fetchall()  # fmt: skip
            summary = conn.execute(
                "select u.content from memex.summaries as u join memex.conversations as c"
                " on c.tenant_id = u.tenant_id and c.id = u.conversation_id"
                " where c.tenant_id = memex.current_tenant() and c.slug = %s",
                (LIVE_CHAT,)).fetchall()  # fmt: skip
        assert uris == (set(self.written) | set(DOCUMENTS["acme"])) - set(self.deleted)
        assert turns == [(n + 1, _turn(n)) for n in range(len(self.written))]
        rewrites = [step for step in range(len(self.written)) if step % 5 == 4]
        assert summary == ([(f"Ann counted to {rewrites[-1]}.",)] if rewrites else [])


def test_an_online_distribution_of_a_database_with_rows_blocks_no_write(
    citus: CitusCluster,
) -> None:
    """`memex citus distribute --online` on a database that holds rows, while an application
    keeps writing documents: every write succeeds, every one is there afterwards, each step
    says how far it is, the foreign keys come back, and the searches of the tenant nobody wrote
    to give what they gave before."""
    dsn = empty_database(citus, "memex_online")
    install(dsn, say=lambda _m: None)
    _load(dsn)
    before = {k: v for k, v in _answers(dsn).items() if k.startswith("globex")}
    with psycopg.connect(dsn) as conn:
        keys = set(conn.execute(MEMEX_KEYS, (TABLES,)).fetchall())
    steps: list[str] = []

    def cats_once_the_keys_are_away() -> list[str]:  # embedded: its embeddings go by cascade
        return ["cats.md"] if len(steps) >= 2 and "cats.md" not in traffic.deleted else []

    app_dsn = citus.coordinator.dsn("memex_online", user=APP_LOGIN)
    with Traffic(app_dsn, also_delete=cats_once_the_keys_are_away) as traffic:
        assert distribute(dsn, say=steps.append, online=True)
    traffic.check(dsn, steps)
    assert traffic.searches_refused > 0  # while tables were distributed and others not yet
    # Citus restarts identity sequences at 1 when a table joins its metadata
    assert not [r for r in traffic.retried if r.startswith("23505")], traffic.retried
    assert any(line.startswith("[18/18] memex.text_segments: distributed") for line in steps)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select to_regclass('memex.citus_saved_foreign_keys')").fetchone() == (
            None,
        )
        tables = {str(r[0]) for r in conn.execute(
            "select logicalrelid::regclass::text from pg_dist_partition")}  # fmt: skip
        assert set(TABLES) <= tables
        assert set(conn.execute(MEMEX_KEYS + " and convalidated", (TABLES,))) == keys
    for node in citus.nodes:  # RLS as the one-transaction distribution leaves it, shards too
        assert _row_security(node.dsn("memex_online")) == _row_security(node.dsn())
    assert "cats.md" in traffic.deleted
    assert any("cascaded as their keys say" in line for line in steps), steps
    assert {k: v for k, v in _answers(dsn).items() if k.startswith("globex")} == before
    assert not distribute(dsn, say=lambda _m: None, online=True)  # done: a no-op


def _placements(dsn: str) -> dict[int, int]:
    """Shard placements of memex.users per worker port."""
    with psycopg.connect(dsn) as conn:
        return {int(str(port)): int(str(n)) for port, n in conn.execute(
            "select n.nodeport, count(*) from pg_dist_shard as s join pg_dist_placement as p"
            " using (shardid) join pg_dist_node as n using (groupid)"
            " where s.logicalrelid = 'memex.users'::regclass group by 1")}  # fmt: skip


def test_a_rebalance_moves_shards_while_the_application_writes_and_searches(
    citus: CitusCluster,
) -> None:
    """`memex citus rebalance` after shards were moved off balance: the groups move back by
    logical replication while an application writes, deletes and searches (Citus's own
    rebalance stalls there: PostgreSQL 15 refuses to replicate into a table whose RLS is
    forced), nothing is lost, and RLS is forced again everywhere."""
    dsn = empty_database(citus, "memex_rebalance")
    install(dsn, say=lambda _m: None)
    assert distribute(dsn, say=lambda _m: None)
    _load(dsn)
    before = _answers(dsn)
    source, target = citus.workers
    with psycopg.connect(dsn, autocommit=True) as conn:  # 6 groups over: 22 against 10
        for (shard,) in conn.execute(
            "select s.shardid from pg_dist_shard as s join pg_dist_placement as p using (shardid)"
            " join pg_dist_node as n using (groupid) where s.logicalrelid = 'memex.users'::regclass"
            " and n.nodeport = %s order by 1 limit 6", (source.port,)).fetchall():  # fmt: skip
            conn.execute(
                "select citus_move_shard_placement(%s, %s, %s, %s, %s,"
                " shard_transfer_mode => 'block_writes')",
                (shard, str(source.socket_dir), source.port, str(target.socket_dir), target.port),
            )
    assert sorted(_placements(dsn).values()) == [10, 22]
    steps: list[str] = []
    with Traffic(citus.coordinator.dsn("memex_rebalance", user=APP_LOGIN)) as traffic:
        assert rebalance(dsn, say=steps.append) > 0
    traffic.check(dsn, steps)
    assert traffic.searched > 0 and traffic.searches_refused == 0
    assert all(14 <= n <= 18 for n in _placements(dsn).values()), steps  # within 10%
    for node in citus.nodes:
        assert _row_security(node.dsn("memex_rebalance")) == _row_security(node.dsn())
    after = _answers(dsn)
    assert {k: v for k, v in after.items() if k.startswith("globex")} == {
        k: v for k, v in before.items() if k.startswith("globex")
    }
    assert rebalance(dsn, say=steps.append) == 0
    assert steps[-1] == "the shards are balanced already: nothing to move"


def _state(dsn: str) -> tuple[object, ...]:
    """What an online distribution or a rebalance would change: whether memex is distributed,
    the saved-keys table, memex's foreign keys, memex_owner's login, RLS, the placements."""
    with psycopg.connect(dsn) as conn:
        keys = set(conn.execute(MEMEX_KEYS, (TABLES,)))
        saved = conn.execute("select to_regclass(%s)", (SAVED_KEYS,)).fetchone()
        login = conn.execute("select rolcanlogin from pg_roles where rolname = 'memex_owner'")
        distributed = is_distributed(conn)
        return (distributed, saved, keys, login.fetchone(), _row_security(dsn),
                _placements(dsn) if distributed else None)  # fmt: skip


def test_online_moves_refuse_without_logical_replication_and_change_nothing() -> None:
    """`memex citus distribute --online` and `memex citus rebalance` copy tables by logical
    replication: on nodes with PostgreSQL's default wal_level (replica) each refuses, saying
    the fix, before it changes anything. A distribution in one transaction needs none."""
    with citus_cluster("test-citus-replica", workers=1, logical=False) as cluster:
        dsn = cluster.dsn()
        install(dsn, say=lambda _m: None)
        before = _state(dsn)
        refused = r"wal_level is replica here\.\nFix: wal_level = logical on every node .* or "
        with pytest.raises(MemexError, match=refused + "distribute without --online"):
            distribute_online(dsn, say=lambda _m: None)
        assert _state(dsn) == before
        assert distribute(dsn, say=lambda _m: None)
        before = _state(dsn)
        with pytest.raises(MemexError, match=refused + "Citus's rebalance_table_shards"):
            rebalance(dsn, say=lambda _m: None)
        assert _state(dsn) == before
