"""The latency table: its form, its cache (written, reused, re-measured when corrupt) and
its refusals. Conversion and timing are replaced by fakes where the test is about the
table's bookkeeping; one slow test measures a tiny network in LiteRT for real."""

import json
import os

import numpy as np
import pytest

from kdarts.image.genotype import DARTS_V2, PRIMITIVES, num_edges

TINY = dict(num_classes=3, image_shape=(8, 8, 3), channels=4, layers=3)
#: Few ops keep the fake tests' network builds short; "none" is a column that costs 0.
FEW = ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3")
FEW_GENOTYPE = {"normal": [("sep_conv_3x3", 0), ("skip_connect", 1)] * 4,
                "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1)] * 4}


@pytest.fixture
def fake_runtime(monkeypatch):
    """Conversion names the layer and its input; the "time" of a model is a function of
    that name, so each distinct op gets its own figure and the probe network another."""
    from kdarts.image import latency

    calls = []

    def convert(layer, input_shape, runtime):
        inner = getattr(layer, "op", layer)  # the op in its timing graph
        return json.dumps([type(inner).__name__, getattr(inner, "strides", None),
                           list(input_shape)]).encode()

    def time_models(runtime, models, repeats=1, warmup=0, rounds=1):
        calls.extend(model for model, _ in models)
        return [(sum(model) % 97) / 1000.0 for model, _ in models]

    monkeypatch.setattr(latency, "convert", convert)
    monkeypatch.setattr(latency, "time_models", time_models)
    return calls


def refuse_to_measure(monkeypatch):
    from kdarts.image import latency

    def boom(*args, **kwargs):
        raise AssertionError("measured although the table is cached")

    monkeypatch.setattr(latency, "time_models", boom)
    monkeypatch.setattr(latency, "convert", boom)


def test_an_unknown_runtime_is_refused_naming_the_valid_ones(tmp_path):
    from kdarts.image.latency import latency_table, measure_latency

    with pytest.raises(ValueError, match="'tensorrt'.*valid runtimes: litert, onnx"):
        latency_table("tensorrt", **TINY, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="valid runtimes: litert, onnx"):
        measure_latency(DARTS_V2, "coreml", num_classes=3, image_shape=(8, 8, 3))
    assert not os.listdir(tmp_path)


def test_a_missing_runtime_names_the_pip_extra(monkeypatch):
    import builtins

    from kdarts.image.latency import check_runtime

    real_import = builtins.__import__

    def without_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_ort)
    with pytest.raises(ImportError) as err:
        check_runtime("onnx")
    assert 'pip install "kdarts[onnx]"' in str(err.value)
    assert "\n" not in str(err.value)


def test_the_table_has_its_form_and_is_cached_and_reused(tmp_path, fake_runtime, monkeypatch):
    from kdarts.image.costs import COST_UNITS
    from kdarts.image.genotype import Genotype
    from kdarts.image.latency import cache_key, cache_path, latency_table

    table = latency_table("litert", **TINY, primitives=FEW, cache_dir=tmp_path)
    assert table.kind == "latency_ms" and COST_UNITS[table.kind] == "milliseconds"
    assert table.primitives == FEW
    assert set(table.per_op) == {"normal", "reduce"}
    for t in ("normal", "reduce"):
        assert table.per_op[t].shape == (num_edges(4), len(FEW))
        assert np.all(table.per_op[t][:, FEW.index("none")] == 0.0)
        assert np.all(table.per_op[t][:, FEW.index("sep_conv_3x3")] != 0.0)
    # the normal cell's identity converts to nothing: it costs exactly 0
    assert np.all(table.per_op["normal"][:, FEW.index("skip_connect")] == 0.0)
    measured = len(fake_runtime)
    assert measured > 0
    # the fixed part makes the probe's prediction its measurement
    path = cache_path(cache_key("litert", **TINY, primitives=FEW), tmp_path)
    with open(path) as f:
        record = json.load(f)
    probe = Genotype.from_dict(record["probe"]["genotype"])
    assert table.of(probe) == pytest.approx(record["probe"]["measured_ms"], abs=1e-12)
    assert os.listdir(tmp_path) == [os.path.basename(path)]  # no temp file left behind

    refuse_to_measure(monkeypatch)
    again = latency_table("litert", **TINY, primitives=FEW, cache_dir=tmp_path)
    assert again.fixed == table.fixed
    for t in ("normal", "reduce"):
        np.testing.assert_array_equal(again.per_op[t], table.per_op[t])
    genotype = Genotype(FEW_GENOTYPE["normal"], [2, 3, 4, 5], FEW_GENOTYPE["reduce"],
                        [2, 3, 4, 5])
    assert again.of(genotype) == table.of(genotype)


def test_another_shape_or_runtime_is_another_cache_entry(tmp_path):
    from kdarts.image.latency import cache_key, cache_path

    base = cache_path(cache_key("litert", **TINY), tmp_path)
    assert cache_path(cache_key("litert", **{**TINY, "channels": 8}), tmp_path) != base
    assert cache_path(cache_key("litert", **TINY, primitives=PRIMITIVES), tmp_path) != base
    assert cache_path(cache_key("onnx", **TINY), tmp_path) != base
    assert cache_path(cache_key("litert", **TINY), tmp_path) == base
    key = cache_key("litert", **TINY)
    assert key["machine"] and key["versions"]["ai_edge_litert"]


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    from kdarts.image.latency import default_cache_dir

    monkeypatch.delenv("KDARTS_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == str(tmp_path / "xdg" / "kdarts" / "latency")
    monkeypatch.setenv("KDARTS_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == str(tmp_path / "mine" / "latency")
    monkeypatch.delenv("KDARTS_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == str(tmp_path / "home" / ".cache" / "kdarts" / "latency")


@pytest.mark.parametrize("damage", ["truncated", "wrong_shape", "other_key"])
def test_a_corrupt_cache_is_measured_again_with_a_warning(tmp_path, fake_runtime, damage):
    from kdarts.image.latency import cache_key, cache_path, latency_table

    first = latency_table("litert", **TINY, primitives=FEW, cache_dir=tmp_path)
    path = cache_path(cache_key("litert", **TINY, primitives=FEW), tmp_path)
    with open(path) as f:
        text = f.read()
    record = json.loads(text)
    if damage == "truncated":
        text = text[:len(text) // 2]
    elif damage == "wrong_shape":
        record["per_op"]["normal"] = record["per_op"]["normal"][:3]
        text = json.dumps(record)
    else:
        record["key"]["channels"] = 99
        text = json.dumps(record)
    with open(path, "w") as f:
        f.write(text)
    before = len(fake_runtime)
    with pytest.warns(RuntimeWarning, match="unreadable.*measuring again") as caught:
        again = latency_table("litert", **TINY, primitives=FEW, cache_dir=tmp_path)
    assert len(fake_runtime) > before  # measured anew
    assert all("\n" not in str(w.message) for w in caught)
    np.testing.assert_array_equal(again.per_op["normal"], first.per_op["normal"])
    with open(path) as f:
        json.load(f)  # rewritten whole


@pytest.mark.slow
def test_a_tiny_network_measured_in_litert(tmp_path, monkeypatch):
    """Real conversion and timing: the figures are finite, the probe is predicted as
    measured, and a second call reads the cache (no assertion on speed)."""
    pytest.importorskip("ai_edge_litert")
    from kdarts.image.latency import cache_key, cache_path, latency_table, measure_latency

    few = ("max_pool_3x3", "skip_connect", "sep_conv_3x3")
    table = latency_table("litert", **TINY, primitives=few, cache_dir=tmp_path, repeats=20,
                          warmup=2)
    assert table.kind == "latency_ms"
    for t in ("normal", "reduce"):
        assert table.per_op[t].shape == (num_edges(4), 3)
        assert np.all(np.isfinite(table.per_op[t]))
    assert np.isfinite(table.fixed)
    with open(cache_path(cache_key("litert", **TINY, primitives=few), tmp_path)) as f:
        record = json.load(f)
    assert record["probe"]["measured_ms"] > 0
    ms = measure_latency(DARTS_V2, "litert", num_classes=3, image_shape=(8, 8, 3),
                         channels=4, layers=3, repeats=10, warmup=2)
    assert np.isfinite(ms) and ms > 0
    refuse_to_measure(monkeypatch)
    again = latency_table("litert", **TINY, primitives=few, cache_dir=tmp_path)
    assert again.fixed == table.fixed
