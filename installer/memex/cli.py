"""The `memex` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

import psycopg
from psycopg.conninfo import conninfo_to_dict

from memex import __version__, progress
from memex.client.errors import MemexClientError
from memex.dsn import resolve_dsn
from memex.errors import MemexError, database_error_exit_code, describe_database_error

Handler = Callable[[argparse.Namespace], int]
# `memex dev dsn --role`: the memex roles a tour or a test connects as.
DEV_ROLES = {"app": "memex_app", "admin": "memex_admin"}


class Parser(argparse.ArgumentParser):
    """A command-line mistake is bad input: exit 1 (the README's contract), not argparse's 2,
    which memex keeps for a failing system."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _add_dsn(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn", help="libpq DSN or URI (default: $MEMEX_DSN, else the dev cluster)"
    )


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar (there is none when stderr is not a terminal)",
    )


def cmd_dev(args: argparse.Namespace) -> int:
    from memex.devcluster import cluster

    dev, replica = cluster("dev"), cluster("dev-replica")
    chosen = replica if getattr(args, "replica", False) else dev
    if args.action == "up" and chosen is replica:
        replica.start_as_replica_of(dev)
        print(f"dev replica running (hot standby of the dev cluster): {replica.dsn()}",
              file=sys.stderr)  # fmt: skip
    elif args.action == "up":
        dev.start()
        print(f"dev cluster running: {dev.dsn()}", file=sys.stderr)
    elif args.action == "down":
        replica.stop()
        dev.stop()
        print("dev cluster stopped", file=sys.stderr)
    elif args.action == "status":
        state = "running" if chosen.is_running() else "stopped"
        if not chosen.is_initialised():
            state = f"not created (run `memex dev up{' --replica' if chosen is replica else ''}`)"
        facts = [("state", state), ("data", chosen.data_dir), ("port", chosen.port),
                 ("socket", chosen.socket_dir), ("log", chosen.log_file),
                 ("dsn", chosen.dsn())]  # fmt: skip
        print("\n".join(f"{name + ':':8} {value}" for name, value in facts))
        return 0 if chosen.is_running() else 1
    elif args.action == "dsn":
        print(chosen.dsn(role=DEV_ROLES[args.role] if args.role else None))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from memex.install import install

    dsn = resolve_dsn(args.dsn)
    report = install(dsn, say=lambda m: print(m, file=sys.stderr))
    print(report.summary())
    if getattr(args, "citus", False):
        from memex.citus import distribute

        distribute(dsn, say=lambda m: print(m, file=sys.stderr))
    return 0


def cmd_citus(args: argparse.Namespace) -> int:
    from memex.citus import distribute
    from memex.citus_online import rebalance

    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.action == "rebalance":
        rebalance(resolve_dsn(args.dsn), say=say)
    else:
        distribute(resolve_dsn(args.dsn), say=say, online=args.online)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from memex.status import status

    return status(resolve_dsn(args.dsn), args.tenant, args.json)


def cmd_tenant(args: argparse.Namespace) -> int:
    from memex import tenants

    dsn = resolve_dsn(args.dsn)
    if args.action == "list":
        return tenants.list_tenants(dsn, args.json)
    if args.action == "create":
        return tenants.create_tenant(dsn, args.name)
    return tenants.delete_tenant(dsn, args.name, args.confirm)


def cmd_doctor(args: argparse.Namespace) -> int:
    from memex.doctor import doctor

    return doctor(resolve_dsn(args.dsn), repair=args.repair)


def cmd_demo(args: argparse.Namespace) -> int:
    from memex.demo import demo

    return demo(resolve_dsn(args.dsn))


def cmd_ingest(args: argparse.Namespace) -> int:
    from memex.ingest import ingest

    report = ingest(
        resolve_dsn(args.dsn), args.paths, _tenant(args), uri_prefix=args.uri_prefix,
        language=args.language, create_tenant=args.create_tenant, max_file_mb=args.max_file_mb,
        root=args.root, excludes=args.exclude, follow_links=args.follow_links,
    )  # fmt: skip
    print(report.summary())
    for failure in report.failed:
        print(f"memex: failed: {failure.source.uri}: {failure.detail} (file {failure.source.path})",
              file=sys.stderr)  # fmt: skip
    _embed_after_ingest(resolve_dsn(args.dsn), _tenant(args), skip=args.no_embed)
    return 1 if report.failed else 0


def cmd_import(args: argparse.Namespace) -> int:
    from memex.imports import run_import

    dsn = resolve_dsn(args.dsn)
    tenant = _tenant(args)
    name = getattr(args, "collection", None) or getattr(args, "table", None)
    report = run_import(args.kind, dsn, tenant, source_dsn=args.source_dsn, name=name,
                        schema=args.schema)  # fmt: skip
    print(report.summary())
    for key, detail in report.failures:
        print(f"memex: failed: {key}: {detail}", file=sys.stderr)
    _embed_after_ingest(dsn, tenant, skip=args.no_embed)
    return 1 if report.failures else 0


def _embed_after_ingest(dsn: str, tenant: str, skip: bool) -> None:
    """What was ingested is searchable by text at once and by meaning once embedded: embed it
    now when this role may (memex_admin), else say what embeds it."""
    from memex.embedding import embed
    from memex.ingest import pending_after_ingest

    pending, can_embed = pending_after_ingest(dsn, tenant)
    if not pending:
        return
    if skip or not can_embed:
        why = "" if skip else " (embedding needs memex_admin)"
        print(
            f"{pending:,} chunks of {tenant!r} wait for embedding{why}: until then searches "
            "find them by their words only; run `memex embed`, or keep `memex worker` running"
        )
        return
    print(f"embedding {pending:,} pending chunks (--no-embed skips this step)")
    embed(dsn, None, 64, None)


def _tenant(args: argparse.Namespace) -> str:
    tenant = args.tenant or os.environ.get("MEMEX_TENANT")
    if not tenant:
        raise MemexError("no tenant: pass --tenant NAME (or set MEMEX_TENANT)")
    return str(tenant)


def _filters(args: argparse.Namespace) -> object:
    try:
        return json.loads(args.filters)
    except json.JSONDecodeError as exc:
        raise MemexError(f"--filters is not JSON: {exc}") from None


def cmd_search(args: argparse.Namespace) -> int:
    from memex.search import search

    filters = _filters(args)
    return search(
        resolve_dsn(args.dsn), args.query, _tenant(args), args.json, full=args.full, k=args.k,
        mode=args.mode, filters=filters, space=args.space, diversity=args.diversity,
    )  # fmt: skip


def cmd_context(args: argparse.Namespace) -> int:
    from memex.search import context

    return context(resolve_dsn(args.dsn), args.query, _tenant(args), args.budget, k=args.k,
                   mode=args.mode, filters=_filters(args))  # fmt: skip


def cmd_mcp(args: argparse.Namespace) -> int:
    try:
        from memex.mcp_server import serve_http, serve_stdio
    except ModuleNotFoundError as exc:
        raise MemexError(f"memex mcp needs the MCP SDK ({exc.name} is not installed): "
                         "pip install 'memex[mcp]'") from None  # fmt: skip

    dsn = resolve_dsn(args.dsn)
    if args.embed_max_chars < 0:
        raise MemexError(f"--embed-max-chars must be 0 or more, not {args.embed_max_chars}")
    if args.http:
        if args.tenant:
            raise MemexError("--tenant is for stdio: over HTTP each bearer token names its tenant "
                             "(memex token create --tenant T)")  # fmt: skip
        serve_http(dsn, args.host, args.port, args.embed_max_chars)
    else:
        serve_stdio(dsn, _tenant(args), args.embed_max_chars)
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from memex import tokens

    dsn = resolve_dsn(args.dsn)
    if args.action == "create":
        return tokens.create(dsn, args.tenant, args.expires, args.label)
    if args.action == "list":
        return tokens.listing(dsn, args.json)
    return tokens.revoke(dsn, args.id)


def cmd_eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from memex.eval_conversations import (
        evaluate_conversations,
        format_conversation_report,
        is_locomo,
    )
    from memex.evaluate import evaluate, format_report, plot

    conversations = is_locomo(Path(args.dir))
    if conversations is not None:
        report = evaluate_conversations(resolve_dsn(args.dsn), conversations, keep=args.keep,
                                        compare=args.compare,
                                        with_summaries=args.with_summaries)  # fmt: skip
        print(format_conversation_report(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2))
        return 0
    if args.with_summaries:
        raise MemexError("--with-summaries is for conversations (a LoCoMo JSON file)")
    report = evaluate(resolve_dsn(args.dsn), Path(args.dir), keep=args.keep, split=args.split,
                      compare=args.compare, drop_self=not args.keep_identical_ids)  # fmt: skip
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.plot:
        plot(report, Path(args.plot))
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from memex.embedding import embed

    return embed(resolve_dsn(args.dsn), args.space, args.batch_size, args.max_rows)


def cmd_reembed(args: argparse.Namespace) -> int:
    from memex.reembed import Target, reembed

    target = Target(args.model, args.dimensions, args.space_name, args.batch_size)
    return reembed(
        resolve_dsn(args.dsn), target, activate=not args.no_activate, dry_run=args.dry_run,
        concurrent_index=args.concurrent_index, as_json=args.json,
    )  # fmt: skip


def cmd_worker(args: argparse.Namespace) -> int:
    """Its options and --help are memex_db.worker's own (one home): only --dsn is read here."""
    from memex.embedding import worker

    wants_help = any(a in ("-h", "--help") for a in args.worker_args)
    if args.dsn and "password" in conninfo_to_dict(args.dsn):
        raise MemexError(
            "memex worker: --dsn holds a password, which `ps` would show to every user of this "
            "machine for as long as the worker runs.\nFix: give the DSN in $MEMEX_DSN, or the "
            "password in ~/.pgpass or $PGPASSFILE, and leave it out of --dsn"
        )
    worker("" if wants_help else resolve_dsn(args.dsn), args.worker_args)


def cmd_image(args: argparse.Namespace) -> int:
    from memex.image import build

    return build(pg_major=args.pg_major, tag=args.tag)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="memex", description="Postgres-native memory and RAG.",
                    epilog="exit status: 0 success, 1 bad input, 2 a system failed, "
                    "3 a missing prerequisite, 130 interrupted")  # fmt: skip
    parser.add_argument("--version", action="version", version=f"memex {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    dev = sub.add_parser("dev", help="the embedded local PostgreSQL cluster")
    dev_actions = dev.add_subparsers(dest="action", required=True, parser_class=Parser)
    for action, text in (
        ("up", "create the cluster if needed and start it (port 5439, its own socket directory)"),
        ("down", "stop it, and its replica if one runs (their data stays)"),
        ("status", "running or not, where its data, socket and log are; exit 1 when stopped"),
        ("dsn", "print its connection string (for psql and --dsn)"),
    ):
        dev_action = dev_actions.add_parser(action, help=text, description=text)
        if action in ("up", "status", "dsn"):
            dev_action.add_argument(
                "--replica", action="store_true",
                help="a hot standby streaming from the dev cluster (port 5441; `up --replica` "
                "needs the dev cluster running and makes the replica the first time)",
            )  # fmt: skip
    dev_action.add_argument("--role", choices=sorted(DEV_ROLES),
                            help="connect as memex_app (what applications see: RLS applies, "
                            "which the superuser bypasses) or memex_admin")  # fmt: skip
    dev.set_defaults(handler=cmd_dev)

    for name, handler, text in (
        ("install", cmd_install, "install or upgrade memex in a database"),
        ("doctor", cmd_doctor, "what is missing or broken, and how to fix it"),
        ("demo", cmd_demo, "load the sample corpus and run a few searches"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _add_dsn(p)
        p.set_defaults(handler=handler)
        if name == "install":
            p.add_argument("--citus", action="store_true",
                           help="on a Citus coordinator with workers: then distribute "
                           "memex's tables by tenant (docs/scale.md); no-op once done")  # fmt: skip
        if name == "doctor":
            p.add_argument("--repair", action="store_true",
                           help="first export the bundled model to ONNX again (a damaged model "
                           "file); run it on the database server")  # fmt: skip

    citus = sub.add_parser("citus", help="memex on a Citus cluster (docs/scale.md)")
    citus_actions = citus.add_subparsers(dest="action", required=True, parser_class=Parser)
    distribute = citus_actions.add_parser(
        "distribute", help="distribute memex's tables by tenant (reference tables for the "
        "shared ones): in one transaction, or --online step by step; no-op when done")  # fmt: skip
    _add_dsn(distribute)
    distribute.add_argument("--online", action="store_true",
                            help="for a database that holds rows: copy each table without "
                            "blocking writes (wal_level = logical; resumable)")  # fmt: skip
    move = citus_actions.add_parser(
        "rebalance", help="move shard groups to even out the workers (after adding one), "
        "without blocking writes (wal_level = logical)")  # fmt: skip
    _add_dsn(move)
    citus.set_defaults(handler=cmd_citus)

    status = sub.add_parser("status", help="per tenant and space: what memex holds, what is "
                            "pending, who is embedding")  # fmt: skip
    status.add_argument("--tenant", help="this tenant only (an application role sees no other)")
    status.add_argument("--json", action="store_true", help="the same figures as JSON")
    _add_dsn(status)
    status.set_defaults(handler=cmd_status)

    tenant = sub.add_parser("tenant", help="list, create or delete tenants (memex_admin)")
    tenant_actions = tenant.add_subparsers(dest="action", required=True, parser_class=Parser)
    listing = tenant_actions.add_parser("list", help="every tenant with what it holds")
    listing.add_argument("--json", action="store_true", help="as JSON")
    create = tenant_actions.add_parser("create", help="create a tenant (idempotent by name)")
    create.add_argument("name")
    delete = tenant_actions.add_parser(
        "delete", help="delete a tenant and everything it holds, in committed batches"
    )
    delete.add_argument("name")
    delete.add_argument(
        "--confirm",
        metavar="NAME",
        help="the tenant's name again (asked at a prompt on a terminal)",
    )
    for p in (listing, create, delete):
        _add_dsn(p)
    tenant.set_defaults(handler=cmd_tenant)

    ingest = sub.add_parser(
        "ingest", help="documents (txt, md, html, pdf), conversations and artefacts, into a tenant"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (recursive)")
    ingest.add_argument("--tenant", help="tenant id or name (default: $MEMEX_TENANT)")
    ingest.add_argument(
        "--create-tenant", action="store_true", help="create the tenant first (needs memex_admin)"
    )
    ingest.add_argument("--uri-prefix", default="", help="prepended to every document uri")
    ingest.add_argument("--root", help="uris are paths relative to this directory "
                        "(default: the current directory)")  # fmt: skip
    ingest.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                        help="skip files matching this gitignore-style pattern, relative to "
                        "the root (repeatable; a directory's .memexignore adds more)")  # fmt: skip
    ingest.add_argument(
        "--language", help="text-search language of the documents (e.g. en, fr, french)"
    )
    ingest.add_argument("--max-file-mb", type=int, default=100, help="larger files fail (100)")
    ingest.add_argument("--follow-links", action="store_true",
                        help="read files that links in a directory point to outside it "
                        "(default: skipped, named)")  # fmt: skip
    ingest.add_argument("--no-embed", action="store_true",
                        help="leave new chunks pending (default: embed them at the end when "
                        "this role may run memex.embed_pending)")  # fmt: skip
    _add_quiet(ingest)
    _add_dsn(ingest)
    ingest.set_defaults(handler=cmd_ingest)

    search = sub.add_parser("search", help="rag_search from the command line")
    search.add_argument("query")
    search.add_argument("--tenant", help="tenant id or name (default: $MEMEX_TENANT)")
    search.add_argument("--k", type=int, default=8, help="how many results (default 8)")
    search.add_argument("--mode", default="hybrid", choices=["hybrid", "vector", "text"],
                        help="hybrid (default): meaning and words fused; vector: meaning; "
                        "text: BM25 words")  # fmt: skip
    search.add_argument("--filters", default="{}", help='JSON, e.g. \'{"folder": "kb"}\'')
    search.add_argument("--space", help="embedding space name (default: the active text space)")
    search.add_argument(
        "--diversity",
        type=float,
        default=None,
        metavar="0..1",
        help="re-order for variety (maximal marginal relevance); off by default",
    )
    search.add_argument("--full", action="store_true", help="each result's whole text")
    search.add_argument("--json", action="store_true", help="the rows as JSON")
    _add_dsn(search)
    search.set_defaults(handler=cmd_search)

    context = sub.add_parser(
        "context", help="compose_context: the best passages as a prompt-ready block, cited"
    )
    context.add_argument("query")
    context.add_argument("--tenant", help="tenant id or name (default: $MEMEX_TENANT)")
    context.add_argument("--budget", type=int, default=1000,
                         help="tokens of the space's model the block may take (1000)")  # fmt: skip
    context.add_argument("--k", type=int, default=8, help="search results to draw from (8)")
    context.add_argument("--mode", default="hybrid", choices=["hybrid", "vector", "text"],
                         help="search mode (default hybrid)")  # fmt: skip
    context.add_argument("--filters", default="{}", help="JSON, as for search")
    _add_dsn(context)
    context.set_defaults(handler=cmd_context)

    imports = sub.add_parser(
        "import", help="bring another store's data into a tenant (LangChain, LlamaIndex, legacy)",
        epilog="Idempotent (a second run changes nothing). The source's vectors are kept when "
        "its model is the space's (a sample re-embedded: cosine >= 0.999), else its texts are "
        "embedded. docs/integrations.md.",
    )  # fmt: skip
    kinds = imports.add_subparsers(dest="kind", required=True, parser_class=Parser)
    for kind, text, flag, flag_help in (
        ("langchain", "langchain-postgres PGVector: langchain_pg_collection/_embedding",
         "--collection", "the collection's name"),
        ("llamaindex", "a LlamaIndex PGVectorStore table (data_<name>)", "--table",
         "the table (its name, or the table_name given to PGVectorStore)"),
        ("legacy", "the design notes' conversations, messages, summaries, embeddings", None,
         None),
    ):  # fmt: skip
        source = kinds.add_parser(kind, help=text, description=text)
        if flag:
            source.add_argument(flag, help=flag_help)
        source.add_argument("--tenant", help="the tenant to import into (default $MEMEX_TENANT)")
        source.add_argument("--source-dsn", help="the source's database (default: --dsn's)")
        source.add_argument("--schema", default="public", help="the source's schema (public)")
        source.add_argument("--no-embed", action="store_true",
                            help="leave texts to embed to `memex embed` or a worker")  # fmt: skip
        _add_quiet(source)
        _add_dsn(source)
    imports.set_defaults(handler=cmd_import)

    mcp = sub.add_parser(
        "mcp", help="serve memex to agents over the Model Context Protocol (stdio or HTTP)",
        epilog="stdio: one tenant per process (--tenant or $MEMEX_TENANT). HTTP: each request's "
        "bearer token names its tenant (memex token create). docs/mcp.md has client setups.",
    )  # fmt: skip
    mcp.add_argument(
        "--tenant", help="stdio: the tenant this process serves (default $MEMEX_TENANT)"
    )
    mcp.add_argument("--http", action="store_true", help="streamable HTTP instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="HTTP: address to listen on (127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8808, help="HTTP: port (8808); path /mcp")
    mcp.add_argument(
        "--embed-max-chars", type=int, default=16_000, metavar="N",
        help="a write of at most N characters is embedded at once, a bigger one is left to "
        "the worker (16000; 0: leave every write to the worker)",
    )  # fmt: skip
    _add_dsn(mcp)
    mcp.set_defaults(handler=cmd_mcp)

    token = sub.add_parser("token", help="API tokens of the MCP server over HTTP (memex_admin)")
    token_actions = token.add_subparsers(dest="action", required=True, parser_class=Parser)
    create_token = token_actions.add_parser("create", help="a new token for a tenant, shown once")
    create_token.add_argument("--tenant", required=True, help="the tenant the token acts for")
    create_token.add_argument(
        "--expires", metavar="INTERVAL", help="e.g. 30d, 12h or a PostgreSQL interval (never)"
    )
    create_token.add_argument("--label", help="what the token is for (shown by list)")
    list_tokens = token_actions.add_parser("list", help="every token: tenant, label, state")
    list_tokens.add_argument("--json", action="store_true", help="as JSON")
    revoke_token = token_actions.add_parser("revoke", help="revoke a token by its id")
    revoke_token.add_argument("id", help="the token's id (memex token list)")
    for p in (create_token, list_tokens, revoke_token):
        _add_dsn(p)
    token.set_defaults(handler=cmd_token)

    evaluate = sub.add_parser(
        "eval", help="retrieval quality of rag_search on a BEIR dataset or LoCoMo conversations"
    )
    evaluate.add_argument("dir", help="corpus.jsonl, queries.jsonl, qrels/test.tsv (BEIR); "
                          "or a LoCoMo JSON file, or a directory holding one")  # fmt: skip
    evaluate.add_argument("--with-summaries", action="store_true",
                          help="conversations: load each session's summary as an L1 summary "
                          "covering its turns")  # fmt: skip
    evaluate.add_argument("--split", default="test", help="qrels/<split>.tsv (default test)")
    evaluate.add_argument("--compare", nargs="+", metavar="SETTING",
                          help="settings to compare, e.g. text hybrid,fusion=rrf "
                          "text,bm25_k1=1.2,bm25_b=0.75 (default: hybrid vector text)")  # fmt: skip
    evaluate.add_argument("--keep-identical-ids", action="store_true",
                          help="keep a hit whose id is the query's (BEIR drops it)")  # fmt: skip
    evaluate.add_argument("--json", help="also write the report as JSON to this file")
    evaluate.add_argument("--plot", help="also draw the metrics as a PNG (needs matplotlib)")
    evaluate.add_argument("--keep", action="store_true", help="keep the scratch tenant's rows")
    _add_quiet(evaluate)
    _add_dsn(evaluate)
    evaluate.set_defaults(handler=cmd_eval)

    embed = sub.add_parser("embed", help="embed pending chunks in the database (progress bar)")
    embed.add_argument("--space", help="space name (default: the active text space)")
    embed.add_argument("--batch-size", type=int, default=64,
                       help="chunks a batch; each batch commits (default 64)")  # fmt: skip
    embed.add_argument("--max-rows", type=int, default=None, metavar="N",
                       help="stop after N chunks (default: all that are pending)")  # fmt: skip
    _add_quiet(embed)
    _add_dsn(embed)
    embed.set_defaults(handler=cmd_embed)

    reembed = sub.add_parser(
        "reembed", help="re-embed every chunk with another model or dimensions, then switch"
    )
    reembed.add_argument("--model", required=True, help="model name or local model directory")
    reembed.add_argument("--dimensions", type=int, help="fewer than the model's: truncated")
    reembed.add_argument("--space-name", help="default: <model>@<dimensions>")
    reembed.add_argument("--batch-size", type=int, default=128,
                         help="chunks a batch; each batch commits (default 128)")  # fmt: skip
    reembed.add_argument("--dry-run", action="store_true", help="the plan and estimate only")
    reembed.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    reembed.add_argument(
        "--no-activate",
        action="store_true",
        help="build the space but leave the switch to memex.activate_space",
    )
    reembed.add_argument("--concurrent-index", action="store_true",
                         help="build the index with CREATE INDEX CONCURRENTLY from here "
                         "(needs membership in memex_owner)")  # fmt: skip
    _add_quiet(reembed)
    _add_dsn(reembed)
    reembed.set_defaults(handler=cmd_reembed)

    # --help and every other option are the worker's own (memex_db.worker, run in the server
    # venv): main() hands it what this parser does not know.
    worker = sub.add_parser(
        "worker", add_help=False,
        help="a queue consumer embedding pending chunks outside the database (`memex worker "
        "--help`: signals, reconnection, exit status)",
    )  # fmt: skip
    _add_dsn(worker)
    worker.set_defaults(handler=cmd_worker, worker_args=[])

    image = sub.add_parser("image", help="the custom PostgreSQL image")
    image.add_argument("action", choices=["build"], help="build it with docker")
    image.add_argument("--pg-major", default="17", help="PostgreSQL major version (default 17)")
    image.add_argument("--tag", default=f"memex-postgres:{__version__}",
                       help="image tag (default memex-postgres:<memex version>)")  # fmt: skip
    image.set_defaults(handler=cmd_image)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and args.handler is cmd_worker:
            args.worker_args = rest
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as exc:  # --help, --version (0) and command-line mistakes (1)
        return int(exc.code or 0)
    handler: Handler = args.handler
    progress.quiet = bool(getattr(args, "quiet", False))
    try:
        return handler(args)
    except MemexError as exc:
        print(f"memex: {exc}", file=sys.stderr)
        return exc.exit_code
    except psycopg.Error as exc:
        print(f"memex: {describe_database_error(exc)}", file=sys.stderr)
        return database_error_exit_code(exc.sqlstate)
    except MemexClientError as exc:  # commands built on memex.Client: as a database error
        said = describe_database_error(exc.original) if exc.original else str(exc)
        print(f"memex: {said}", file=sys.stderr)
        return database_error_exit_code(exc.sqlstate)
    except KeyboardInterrupt:
        print("memex: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
