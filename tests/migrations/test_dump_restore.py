"""Dump and restore (docs/install.md, "Dump and restore"): a populated memex database dumped with
pg_dump, restored into a new database of the same cluster (roles present), then `memex install`:
same schema, same policies, same search results, and the restored copy keeps working."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import psycopg

from memex.devcluster import Cluster, pg_bindir
from memex.install import install
from tests.conftest import create_database, drop_database
from tests.db.helpers import make_tenants
from tests.db.test_tenancy import privileges_snapshot
from tests.migrations.test_install import schema_dump

QUERIES = ["rotate the signing keys", "orage à la maison", "backup restore"]
POLICIES = """
select c.relname, p.polname, p.polpermissive, p.polcmd, p.polroles::regrole[]::text,
       pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
       c.relrowsecurity, c.relforcerowsecurity
  from pg_policy p join pg_class c on c.oid = p.polrelid
 where c.relnamespace = 'memex'::regnamespace order by 1, 2
"""


def _populate(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        make_tenants(conn, "acme", "globex")
        for tenant, prefix in (("acme", "a"), ("globex", "g")):
            conn.execute("select memex.set_tenant(%s, false)", (tenant,))
            docs = [
                (f"kb/{prefix}-keys.md", f"{prefix}: rotate the signing keys, new key first.", {}),
                (f"kb/{prefix}-backup.md", f"{prefix}: nightly backups; restore them monthly.", {}),
                (
                    f"kb/{prefix}-orage.md",
                    "Pendant un orage, restez à la maison.",
                    {"language": "fr"},
                ),
            ]
            for uri, text, meta in docs:
                conn.execute("select memex.upsert_document(%s, %s, null, %s)",
                             (uri, text, psycopg.types.json.Jsonb(meta)))  # fmt: skip
        conn.execute("reset memex.tenant_id")
        conn.execute("set role memex_admin")
        conn.execute("call memex.embed_pending()")


def _state(dsn: str) -> dict[str, object]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        results = {}
        for tenant in ("acme", "globex"):
            conn.execute("select memex.set_tenant(%s, false)", (tenant,))
            results[tenant] = [
                conn.execute(
                    "select metadata ->> 'uri', round(score::numeric, 5)::text"
                    " from memex.rag_search(%s, k => 3)",
                    (q,),
                ).fetchall()
                for q in QUERIES
            ]
        return {
            "results": results,
            "policies": conn.execute(POLICIES).fetchall(),
            "privileges": privileges_snapshot(conn),
            "counts": conn.execute(
                "select (select count(*) from memex.chunks),"
                " (select count(*) from memex.embeddings),"
                " (select count(*) from memex.text_postings), (select memex.pending_count())"
            ).fetchone(),
        }


def test_a_dump_restored_into_a_new_database_searches_the_same(
    pg_cluster: Cluster, db: str, tmp_path: Path
) -> None:
    _populate(db)
    before = _state(db)
    assert before["counts"][3] == 0 and all(before["results"].values())  # type: ignore[index]
    dump = tmp_path / "memex.dump"
    subprocess.run([str(pg_bindir() / "pg_dump"), "--format=custom", f"--file={dump}", db],
                   check=True, timeout=300)  # fmt: skip
    name = f"r_{uuid.uuid4().hex[:10]}"
    restored = create_database(pg_cluster, name)
    try:
        subprocess.run([str(pg_bindir() / "pg_restore"), "--exit-on-error", f"--dbname={restored}",
                        str(dump)], check=True, timeout=300, capture_output=True)  # fmt: skip
        report = install(restored, say=lambda _m: None)
        assert not report.migrations_applied
        assert schema_dump(restored) == schema_dump(db)
        assert _state(restored) == before
        # The copy keeps working: a write is chunked, indexed, embedded and found.
        with psycopg.connect(restored, autocommit=True) as conn:
            conn.execute("select memex.set_tenant('acme', false)")
            conn.execute("select memex.upsert_document('kb/a-new.md', 'Quarterly key ceremony.')")
            conn.execute("set role memex_admin")
            conn.execute("call memex.embed_pending()")
            conn.execute("select memex.set_tenant('acme', false)")
            top = conn.execute("select metadata ->> 'uri' from memex.rag_search("
                               "'key ceremony', k => 1)").fetchone()  # fmt: skip
            assert top == ("kb/a-new.md",)
    finally:
        drop_database(pg_cluster, name)
