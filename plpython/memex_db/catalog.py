"""SQL that memex_db (in a backend and in memex worker) and the installer share: each query
written once. No imports: the installer reads it without loading memex_db's models."""

# pgvector's schema (its name, unquoted: quote it with an identifier when composing SQL)
VECTOR_SCHEMA_SQL = (
    "select n.nspname from pg_catalog.pg_extension as e"
    " join pg_catalog.pg_namespace as n on n.oid = e.extnamespace where e.extname = 'vector'"
)
# A space by name, or the active text space for null (memex._space_id: 22023, P0002); {} is the
# placeholder of the driver ($1 for plpy, %s for psycopg).
SPACE_SQL = "select s.* from memex.spaces as s where s.id = memex._space_id({})"
