"""memex_db without a database: settings, the SQL entry door, providers, the probe."""

from __future__ import annotations

import json
import math
import os
import random
from inspect import signature
from pathlib import Path

import pytest

from memex.migrate import BRIDGE, render_sql, sql_files
from memex_db import __version__, entry, models, probe, settings
from memex_db.errors import InvalidParameter, MemexDbError
from memex_db.onnx_runtime import (
    BATCH_OVERHEAD_TOKENS,
    EXPORT_FORMAT,
    read_pipeline_config,
    token_batches,
    validated_manifest,
)
from tests.unit.fake_plpy import FakePlpy, PlpyError


def test_settings_defaults() -> None:
    conf = settings.read(FakePlpy())
    assert conf.batch_size == 64
    assert conf.memory_budget_mb == 0
    assert conf.threads >= 1
    assert conf.runtime == "auto"


def test_a_session_may_only_lower_the_administrators_ceilings() -> None:
    plpy = FakePlpy({"memex.embed_threads": "512", "memex.memory_budget_mb": "0"})
    assert settings.read(plpy).threads <= os.cpu_count()  # type: ignore[operator]
    plpy.limits = {"embed_threads": "1", "memory_budget_mb": "300"}
    conf = settings.read(plpy)
    assert (conf.threads, conf.memory_budget_mb) == (1, 300), "0 (no budget) is the ceiling"
    plpy.settings["memex.memory_budget_mb"] = "100000"
    assert settings.read(plpy).memory_budget_mb == 300
    plpy.settings["memex.memory_budget_mb"] = "200"
    assert settings.read(plpy).memory_budget_mb == 200, "lowering is allowed"


def test_a_fixed_runtime_cannot_be_switched_by_a_session() -> None:
    plpy = FakePlpy({"memex.embed_runtime": "sentence-transformers"})
    plpy.limits = {"embed_runtime": "onnx"}
    with pytest.raises(MemexDbError, match="fixed the runtime to 'onnx'") as info:
        settings.read(plpy)
    assert info.value.sqlstate == "42501"
    plpy.settings["memex.embed_runtime"] = "auto"
    assert settings.read(plpy).runtime == "onnx"


def test_threads_are_shared_between_concurrent_embedders() -> None:
    one = settings.default_threads(1)
    assert settings.default_threads(one * 2) == 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("memex.embed_threads", "many", "must be an integer"),
        ("memex.embed_threads", "-1", "must be >= 0"),
        ("memex.embed_runtime", "gpu", "must be one of"),
    ],
)
def test_bad_settings_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message) as info:
        settings.read(FakePlpy({name: value}))
    assert name in info.value.message


def test_entry_turns_memex_errors_into_sqlstates() -> None:
    with pytest.raises(PlpyError) as info:  # memex_db.errors.InvalidParameter
        entry.call(FakePlpy(), {}, __version__, "text_search:candidates", None, "q", None, "", 5,
                   -1.0, None, None, None)  # fmt: skip
    assert info.value.kwargs["sqlstate"] == "22023"
    assert "bm25_k1 must be between 0 and 10" in str(info.value)


def test_entry_refuses_another_sql_version() -> None:
    with pytest.raises(PlpyError) as info:
        entry.call(FakePlpy(), {}, "9.9.9", "api:status")
    assert info.value.kwargs["sqlstate"] == "55000"
    assert "new database session" in info.value.kwargs["hint"]


def test_hash_provider_is_deterministic_and_normalised() -> None:
    loaded = models.load({}, "hash:16", threads=1, memory_budget_mb=0)
    a, b = loaded.encoder.encode(["same", "same"], batch_size=8)
    assert a == b
    assert len(a) == 16
    assert math.isclose(sum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert loaded.encoder.provider == "hash"


def test_models_are_cached_per_backend() -> None:
    gd: dict[str, object] = {}
    first = models.load(gd, "hash:8", 1, 0)
    assert models.load(gd, "hash:8", 1, 0) is first


@pytest.mark.parametrize("model", ["some/hub-model", "relative/dir", "hash:0", "hash:x"])
def test_unknown_models_are_refused_without_download(model: str) -> None:
    with pytest.raises(InvalidParameter):
        models.load({}, model, 1, 0)


def test_model_directories_are_looked_for_under_the_model_roots_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InvalidParameter, match="outside the model roots") as info:
        models.resolve_model_dir(str(tmp_path / "absent"))
    assert info.value.sqlstate == "42501"
    monkeypatch.setenv(models.MODEL_ROOTS_ENV, str(tmp_path))
    with pytest.raises(InvalidParameter, match="does not exist"):
        models.resolve_model_dir(str(tmp_path / "absent"))


def test_pinned_requirements_parse() -> None:
    pins = probe.pinned_requirements("a==1.0  # c\n# x\nB_c==2\nno-pin\n")
    assert pins == {"a": "1.0", "b-c": "2"}
    assert "sentence-transformers" in probe.pinned_requirements()


def test_probe_reports_a_missing_venv(tmp_path: Path) -> None:
    checks = probe.run(str(tmp_path), __version__, {"x": "1"})
    venv = next(c for c in checks if c["name"] == "server venv")
    assert venv["ok"] is False
    assert "make setup" in venv["fix"]


def _model_dir(tmp_path: Path, pooling: str, modules: list[str]) -> Path:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "modules.json").write_text(
        json.dumps([{"type": f"sentence_transformers.models.{m}"} for m in modules])
    )
    (tmp_path / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 8, f"pooling_mode_{pooling}": True})
    )
    return tmp_path


def test_fast_path_accepts_mean_pooling(tmp_path: Path) -> None:
    pipeline = ["Transformer", "Pooling", "Normalize"]
    config = read_pipeline_config(str(_model_dir(tmp_path, "mean_tokens", pipeline)))
    assert config == {"dimensions": 8, "normalize": True, "max_length": 512}


def test_fast_path_refuses_other_pipelines(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pooling"):
        read_pipeline_config(str(_model_dir(tmp_path, "cls_token", ["Transformer", "Pooling"])))


def _export_with(tmp_path: Path, manifest: dict[str, object]) -> str:
    export = tmp_path / "memex-onnx"
    export.mkdir(exist_ok=True)
    (export / "model.onnx").write_bytes(b"x")
    (export / "model.int8.onnx").write_bytes(b"x")
    (export / "manifest.json").write_text(json.dumps(manifest))
    return str(tmp_path)


def test_unvalidated_export_is_never_used(tmp_path: Path) -> None:
    fp32 = {"file": "model.onnx", "min_cosine": 0.99999, "mean_cosine": 0.99999}
    int8 = {"file": "model.int8.onnx", "min_cosine": 0.95, "mean_cosine": 0.995}
    # The format before the fused export: exported again by setup, never used.
    old = _export_with(tmp_path, {"onnx_file": "model.onnx", "min_cosine": 0.99999})
    assert validated_manifest(old) is None
    model = _export_with(tmp_path, {"format": EXPORT_FORMAT, "variants": {
        "onnx": {**fp32, "min_cosine": 0.9990}, "onnx-int8": int8}})  # fmt: skip
    assert validated_manifest(model, "onnx") is None  # fp32 must be within 0.9999
    assert validated_manifest(model, "onnx-int8") is None  # int8: min 0.96
    model = _export_with(tmp_path, {"format": EXPORT_FORMAT, "variants": {
        "onnx": fp32, "onnx-int8": {**int8, "min_cosine": 0.975}}})  # fmt: skip
    assert validated_manifest(model, "onnx")["onnx_file"] == "model.onnx"  # type: ignore[index]
    assert validated_manifest(model, "onnx-int8")["onnx_file"] == "model.int8.onnx"  # type: ignore[index]
    (tmp_path / "memex-onnx" / "model.int8.onnx").unlink()
    assert validated_manifest(model, "onnx-int8") is None


def test_token_batches_bound_padded_tokens_and_rows() -> None:
    lengths = [256, 10, 200, 12, 256, 256, 30, 255]
    batches = token_batches(lengths, max_rows=3, token_budget=600)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * width <= 600
        assert [lengths[i] for i in batch] == sorted(lengths[i] for i in batch)
    assert token_batches([5000], max_rows=64, token_budget=100) == [[0]]  # one row always fits
    assert token_batches([], max_rows=64, token_budget=4096) == []


def test_token_batches_cut_where_a_batch_saves_more_padding_than_it_costs() -> None:
    assert token_batches([20] * 10, max_rows=64, token_budget=4096) == [list(range(10))]
    # two lengths far apart: padding the short rows to 60 costs more than a second batch
    assert token_batches([10, 60] * 4, max_rows=64, token_budget=4096) == [
        [0, 2, 4, 6],
        [1, 3, 5, 7],
    ]
    # one token apart: a batch costs more than padding them
    assert len(token_batches([30, 31] * 4, max_rows=64, token_budget=4096)) == 1


def _padded_cost(lengths: list[int], batches: list[list[int]]) -> int:
    return sum(BATCH_OVERHEAD_TOKENS + len(b) * max(lengths[i] for i in b) for b in batches)


def test_token_batches_are_the_cheapest_contiguous_grouping() -> None:
    """Against every grouping of the sorted rows into runs (2^(n-1) of them) that fits."""
    rng = random.Random(3)
    for _ in range(200):
        lengths = [rng.randint(3, 80) for _ in range(rng.randint(1, 8))]
        max_rows, budget = rng.randint(1, 8), rng.randint(80, 400)
        got = token_batches(lengths, max_rows=max_rows, token_budget=budget)
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        best = None
        for mask in range(2 ** (len(order) - 1)):
            runs, current = [], [order[0]]
            for k in range(1, len(order)):
                if mask >> (k - 1) & 1:
                    runs.append(current)
                    current = []
                current.append(order[k])
            runs.append(current)
            fits = all(
                len(r) <= max_rows and (len(r) == 1 or len(r) * lengths[r[-1]] <= budget)
                for r in runs
            )
            if fits and (best is None or _padded_cost(lengths, runs) < best):
                best = _padded_cost(lengths, runs)
        assert _padded_cost(lengths, got) == best
        assert sorted(i for b in got for i in b) == list(range(len(lengths)))


def test_probe_names_a_missing_package_and_a_version_mismatch(tmp_path: Path) -> None:
    site = Path(probe.locate(str(tmp_path), __version__)["site_packages"])
    info = site / "numpy-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 1.0\n")
    wanted = {"numpy": "2.4.6", "onnxruntime": "1.31.1"}
    checks = {c["name"]: c for c in probe.run(str(tmp_path), __version__, wanted)}
    assert checks["package numpy"]["ok"] is False
    assert checks["package numpy"]["detail"] == "1.0, expected 2.4.6"
    assert checks["package onnxruntime"]["detail"] == "not installed"
    assert "make setup" in checks["package onnxruntime"]["fix"]
    assert checks["memex_db"]["ok"] is False


def test_every_bridge_body_in_sql_names_a_public_function_with_its_arguments() -> None:
    bodies = [m for p in sql_files() for m in BRIDGE.finditer(p.read_text())]
    assert len(bodies) >= 15
    for body in bodies:
        function = entry.resolve(body["target"])
        args = [a for a in body["args"].split(",") if a.strip()]
        params = list(signature(function).parameters)
        assert params[:2] == ["plpy", "gd"] and len(params) == 2 + len(args), body[0]
    for target in ("api:_loaded", "_x:y", "os:system", "api:nothing", "api", "api:embed:x"):
        with pytest.raises(InvalidParameter, match="no memex_db function"):
            entry.resolve(target)


def test_the_bridge_renders_to_one_call_with_the_installed_version() -> None:
    rendered = render_sql("as $py$\n@memex_db api:embed(input, space)@\n$py$;", "public")
    assert rendered == (
        'as $py$\nif "memex_db" not in GD:\n    plpy.execute("select memex._python_init()")\n'
        f'return GD["memex_db"].entry.call(plpy, GD, "{__version__}", "api:embed", input, space)'
        "\n$py$;"
    )


def test_vectors_cross_to_sql_as_fixed_point_decimals_exact_to_float32() -> None:
    import numpy

    from memex_db import spaces
    from memex_db.errors import EnvironmentBroken

    vectors = numpy.random.default_rng(0).standard_normal((20, 384)).astype(numpy.float32)
    vectors /= numpy.linalg.norm(vectors, axis=1, keepdims=True)
    literals = spaces.vector_literals(vectors.tolist())
    back = numpy.array([[numpy.float32(x) for x in lit[1:-1].split(",")] for lit in literals])
    big = numpy.abs(vectors) > 1e-3
    assert (back[big] == vectors[big]).all()  # exact to float32 above 0.001
    assert numpy.abs(back - vectors).max() <= 6e-11
    assert spaces.vector_literals([[3e9, 1.0]]) == ["[3000000000.0, 1.0]"]  # no int64 overflow
    with pytest.raises(EnvironmentBroken, match="NaN or infinity"):
        spaces.vector_literals([[float("nan"), 1.0]])


def test_every_provider_module_registers_one_family_and_models_find_theirs() -> None:
    """A provider is one module of memex_db.providers: the registry finds it, and its family is
    what memex.providers (the spaces' foreign key) holds after an install."""
    from memex_db import providers

    assert providers.families() == ["hash", "openai", "sentence-transformers", "wordllama"]
    assert providers.for_model("hash:16").family == "hash"
    assert providers.for_model("wordllama").family == "wordllama"
    assert providers.for_model("endpoint:infinity").family == "openai"
    assert providers.for_model("all-MiniLM-L6-v2").family == "sentence-transformers"
    priorities = [p.matches("all-MiniLM-L6-v2") for p in providers.registry()]
    assert priorities[-1] and not any(priorities[:-1]), "the catch-all is asked last"
