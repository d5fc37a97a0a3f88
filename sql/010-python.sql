-- The PL/Python bridge. Every wrapper is a few lines: import memex_db once per backend (this
-- function), then call one memex_db function through memex_db.entry.call, passing plpy and GD;
-- a body holding only a bridge marker (memex_db, module:function and its arguments, between @s:
-- memex.migrate.BRIDGE) is rendered into that call at install.

-- memex._python_init(): put the server venv and this version's memex_db lib dir on sys.path,
-- once per backend, and check the package version. The root comes from the server process's
-- environment (MEMEX_HOME, default /var/lib/memex), never from a setting: a session that could
-- choose the path would choose which Python code the backend imports.
create or replace function memex._python_init()
returns void
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
if "memex_db" in GD:
    return
import os
import sys

version = "@memex_version@"
home = os.environ.get("MEMEX_HOME") or "/var/lib/memex"
py = "python%d.%d" % sys.version_info[:2]
site = os.path.join(home, "server-venv", "current", "lib", py, "site-packages")
lib = os.path.join(home, "lib", version)
for path in (site, lib):
    if not os.path.isdir(path):
        plpy.error("memex server-side Python is not installed: %s is missing" % path,
                   hint="run `make setup` on the database server, then `memex install`",
                   sqlstate="58000")
    if path not in sys.path:
        sys.path.insert(0, path)
try:
    import memex_db
    import memex_db.entry
except Exception as exc:
    plpy.error("memex_db cannot be imported: %s: %s" % (type(exc).__name__, exc),
               hint="run `memex doctor` for details", sqlstate="58000")
if memex_db.__version__ != version:
    plpy.error("memex SQL %s is installed but %s holds memex_db %s" % (version, lib, memex_db.__version__),
               hint="run `make setup` so the server package matches, then open a new session",
               sqlstate="55000")
GD["memex_paths"] = {"home": home, "site_packages": site, "lib": lib}
GD["memex_db"] = memex_db
$py$;

comment on function memex._python_init() is
'Internal: loads the memex_db package into this backend (once per session).';

-- memex.python_check(): is the server-side Python environment what memex needs?
create or replace function memex.python_check()
returns table (check_name text, ok boolean, detail text)
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:python_check()@
$py$;

comment on function memex.python_check() is
'Checks the server-side Python: interpreter, venv, pinned packages (imported for real), memex_db, bundled model.';

-- memex._backend_status(): this backend's loaded models and memory, as JSON.
create or replace function memex._backend_status()
returns jsonb
language plpython3u
volatile
parallel unsafe
security invoker
set search_path = pg_catalog, pg_temp
as $py$
@memex_db api:status()@
$py$;

comment on function memex._backend_status() is
'Internal: this backend''s memex_db version, loaded models, load times and memory.';
