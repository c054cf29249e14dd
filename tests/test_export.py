"""Tests for kdarts.export: parity of every format with Keras, atomic writes, clear errors."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from kdarts.export import ExportError, ModelLoadError, load_model
from kdarts.image import EvalNetwork
from kdarts.image.export import FORMATS, export_model
from kdarts.image.genotype import DARTS_V1, DARTS_V2

# its module fixtures are built once: keep the file on one test worker
pytestmark = pytest.mark.xdist_group("export")

ATOL = 1e-4


def _small_network(genotype, seed=0):
    """C=8, 5 cells, 32x32 input, with non-trivial BatchNorm statistics."""
    model = EvalNetwork(genotype, num_classes=10, channels=8, layers=5, seed=seed)
    model.build((None, 32, 32, 3))
    rng = np.random.default_rng(seed)
    for v in model.non_trainable_weights:
        # default statistics (0, 1) would hide a BN folded the wrong way
        if v.path.endswith("moving_mean"):
            v.assign(rng.normal(0.0, 0.1, v.shape).astype("float32"))
        elif v.path.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 2.0, v.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def tiny():
    """A very small network for the error paths (built, never traced for export)."""
    model = EvalNetwork(DARTS_V2, num_classes=3, channels=2, layers=3, auxiliary=False)
    model.build((None, 8, 8, 3))
    return model


def _batches(shape=(32, 32, 3)):
    rng = np.random.default_rng(1)
    return [rng.standard_normal((n,) + shape).astype("float32") for n in (1, 3)]


@pytest.mark.slow
@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2], ids=["DARTS_V1", "DARTS_V2"])
def test_onnx_and_saved_model_match_keras(genotype, tmp_path):
    import onnxruntime as ort
    import tensorflow as tf

    model = _small_network(genotype)
    expected = [np.asarray(model(x, training=False)) for x in _batches()]

    # an older SavedModel at the destination is replaced only once the new one verified
    old = tmp_path / "net_saved_model"
    old.mkdir()
    (old / "saved_model.pb").write_bytes(b"old")
    onnx_result = export_model(model, tmp_path / "net.onnx", format="onnx")
    sm_result = export_model(model, old, format="saved_model")
    assert {"saved_model.pb", "variables"} <= set(os.listdir(old))
    assert (old / "saved_model.pb").read_bytes() != b"old"
    assert onnx_result.format == "onnx" and sm_result.format == "saved_model"
    assert 0.0 <= onnx_result.max_abs_diff <= ATOL
    assert 0.0 <= sm_result.max_abs_diff <= ATOL
    # the artifacts and nothing else: no temp folder left behind
    assert sorted(os.listdir(tmp_path)) == ["net.onnx", "net_saved_model"]

    # ONNX Runtime, checked here independently of export's own verification
    session = ort.InferenceSession(onnx_result.path, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("images", "logits")
    assert inp.shape == ["batch", 32, 32, 3] and out.shape == ["batch", 10]
    for x, want in zip(_batches(), expected):
        got = session.run(["logits"], {"images": x})[0]
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)

    # a fresh SavedModel load: the serve function and the serving signature
    loaded = tf.saved_model.load(sm_result.path)
    signature = loaded.signatures["serving_default"]
    for x, want in zip(_batches(), expected):
        np.testing.assert_allclose(np.asarray(loaded.serve(tf.constant(x))), want,
                                   atol=ATOL, rtol=0)
        np.testing.assert_allclose(np.asarray(signature(images=tf.constant(x))["logits"]),
                                   want, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_keras_export_and_load_model(tmp_path):
    model = _small_network(DARTS_V2, seed=2)
    x = _batches()[1]
    result = export_model(model, tmp_path / "net.keras", sample_inputs=x)
    assert result.path == str(tmp_path / "net.keras") and result.max_abs_diff == 0.0
    loaded = load_model(result.path)
    assert isinstance(loaded, EvalNetwork) and loaded.genotype == DARTS_V2
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(model(x, training=False)))
    assert os.listdir(tmp_path) == ["net.keras"]


def test_load_model_errors_name_the_file(tmp_path):
    missing = tmp_path / "absent.keras"
    with pytest.raises(ModelLoadError, match="absent.keras: no such file"):
        load_model(missing)
    garbage = tmp_path / "garbage.keras"
    garbage.write_text("not a zip archive")
    with pytest.raises(ModelLoadError, match="garbage.keras: not a valid Keras archive"):
        load_model(garbage)
    other = tmp_path / "model.h5"
    other.write_bytes(b"\x89HDF")
    with pytest.raises(ModelLoadError, match=r"model.h5: not a \.keras file"):
        load_model(other)
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["garbage.keras", "model.h5"]


def test_the_module_and_the_function_have_their_own_names():
    """``kdarts.export`` is the package (its helpers reachable as README names them),
    ``kdarts.image.export`` the image contract's module, ``kdarts.export_model`` the
    function (``from kdarts.image.export import export`` works too)."""
    import importlib
    import types

    import kdarts
    import kdarts.export
    import kdarts.image.export

    module = importlib.import_module("kdarts.export")
    assert kdarts.export is module and isinstance(module, types.ModuleType)
    assert callable(kdarts.export.float_ops) and callable(kdarts.export.tflite_metadata)
    image = importlib.import_module("kdarts.image.export")
    assert kdarts.image.export is image and isinstance(image, types.ModuleType)
    assert kdarts.export_model is image.export_model is image.export  # from … import export


def test_export_argument_errors_leave_nothing(tiny, tmp_path):
    with pytest.raises(ValueError, match="valid formats: keras, saved_model, onnx, tflite"):
        export_model(tiny, tmp_path / "net.plan", format="tensorrt")
    with pytest.raises(TypeError, match="expected a keras.Model"):
        export_model(object(), tmp_path / "net.keras")
    with pytest.raises(ValueError, match=r"keras format writes a \*\.keras file"):
        export_model(tiny, tmp_path / "net.bin", format="keras")
    with pytest.raises(ValueError, match=r"onnx format writes a \*\.onnx file, got 'x.json'"):
        export_model(tiny, tmp_path / "x.json", format="onnx")
    with pytest.raises(ValueError, match="saved_model format writes a folder"):
        export_model(tiny, tmp_path / "model.onnx", format="saved_model")
    with pytest.raises(ValueError, match="input_dtype"):
        export_model(tiny, tmp_path / "x.onnx", format="onnx", input_dtype="int16")
    with pytest.raises(ValueError, match="normalises raw pixels"):  # no mean/std inside
        export_model(tiny, tmp_path / "x.onnx", format="onnx", input_dtype="uint8")
    with pytest.raises(ValueError, match=r"tflite format writes a \*\.tflite file"):
        export_model(tiny, tmp_path / "net.onnx", format="tflite")
    with pytest.raises(ValueError, match="quantize must be one of none, float16, dynamic, int8"):
        export_model(tiny, tmp_path / "net.tflite", format="tflite", quantize="int4")
    with pytest.raises(ValueError, match="applies to the tflite format only"):
        export_model(tiny, tmp_path / "net.onnx", format="onnx", quantize="float16")
    with pytest.raises(ValueError, match="needs representative_data"):
        export_model(tiny, tmp_path / "net.tflite", format="tflite", quantize="int8")
    with pytest.raises(ValueError, match="normalises raw pixels"):  # uint8 input = raw pixels
        export_model(tiny, tmp_path / "net.tflite", format="tflite", quantize="int8",
                     representative_data=np.zeros((2, 8, 8, 3)))
    assert os.listdir(tmp_path) == []
    assert FORMATS == ("keras", "saved_model", "onnx", "tflite")


def test_unusable_destinations(tiny, tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        export_model(tiny, tmp_path / "no" / "such" / "net.keras")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ExportError, match="is not a folder"):
        export_model(tiny, a_file / "net.keras")
    with pytest.raises(ExportError, match="is a file; a SavedModel is a folder"):
        export_model(tiny, a_file, format="saved_model")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="refusing to replace"):
        export_model(tiny, precious, format="saved_model")
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "precious"]
    assert os.listdir(precious) == ["notes.txt"]


def test_unwritable_folder(tiny, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: make the check see it as a user would
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
            False if os.fspath(p) == str(locked) and mode & os.W_OK else real_access(p, mode)))
    try:
        with pytest.raises(ExportError, match="locked is not writable"):
            export_model(tiny, locked / "net.keras")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o755)


def test_failed_verification_keeps_the_old_artifact(tiny, tmp_path, monkeypatch):
    export_module = sys.modules["kdarts.image.export"]  # `kdarts.export_model`'s module

    target = tmp_path / "net.keras"
    target.write_bytes(b"previous artifact")

    def off_by_one(format, artifact, samples, contract=None):
        assert os.path.exists(artifact)  # written, in a temp folder
        assert os.path.dirname(os.path.dirname(artifact)) == str(tmp_path)
        return [[np.asarray(tiny(x, training=False)) + 1.0] for x in samples]

    monkeypatch.setattr(export_module, "_run_artifact", off_by_one)
    with pytest.raises(ExportError, match="differs from the Keras model by up to 1") as err:
        export_model(tiny, target)
    assert err.value.max_abs_diff == pytest.approx(1.0)
    assert os.listdir(tmp_path) == ["net.keras"]
    assert target.read_bytes() == b"previous artifact"


def test_missing_onnxruntime_is_explained(tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    with pytest.raises(ExportError, match="pip install onnxruntime.*verify=False"):
        export_model(tiny, tmp_path / "net.onnx", format="onnx")
    assert os.listdir(tmp_path) == []


def test_unbuilt_model_needs_sample_inputs(tmp_path):
    model = EvalNetwork(DARTS_V2, num_classes=3, channels=2, layers=3)
    with pytest.raises(ValueError, match="not built"):
        export_model(model, tmp_path / "net.keras")
    assert not model.built and os.listdir(tmp_path) == []


@pytest.mark.slow
def test_raw_image_exports_record_their_input_contract(tmp_path):
    """A network with mean/std takes raw pixels (float32 or uint8) in every format, and
    each artifact says so in its metadata."""
    import json

    import onnx
    import onnxruntime as ort
    import tensorflow as tf

    mean, std = [0.2, 0.4, 0.6], [0.3, 0.2, 0.1]
    model = EvalNetwork(DARTS_V2, num_classes=5, channels=4, layers=3, auxiliary=False,
                        mean=mean, std=std)
    model.build((None, 8, 8, 3))
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    want = np.asarray(model(images.astype(np.float32), training=False))
    # the first layer is the training split's normalisation
    normalised = (images.astype(np.float32) / 255.0 - np.array(mean)) / np.array(std)
    plain = EvalNetwork(DARTS_V2, num_classes=5, channels=4, layers=3, auxiliary=False)
    plain.build((None, 8, 8, 3))
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(plain(normalised.astype(np.float32))), want,
                               atol=1e-4)
    np.testing.assert_allclose(np.asarray(model(images, training=False)), want, atol=1e-5)
    with pytest.raises(ValueError, match="3 channel"):
        model(images[..., :1], training=False)

    results = {fmt: export_model(model, tmp_path / name, format=fmt, **kw)
               for fmt, name, kw in (("saved_model", "sm", {}), ("onnx", "f.onnx", {}))}
    uint8_onnx = export_model(model, tmp_path / "u.onnx", format="onnx", input_dtype="uint8")
    for result in (*results.values(), uint8_onnx):
        contract = result.input_contract
        assert contract["normalized_inside"] and contract["pixel_range"] == [0.0, 255.0]
        assert contract["shape"] == [None, 8, 8, 3] and contract["mean"] == mean
    assert results["onnx"].input_contract["dtype"] == "float32"
    assert uint8_onnx.input_contract["dtype"] == "uint8"

    for path, feed in ((results["onnx"].path, images.astype(np.float32)),
                       (uint8_onnx.path, images)):
        proto = onnx.load(path)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert json.loads(meta["kdarts.input"])["std"] == std
        assert "pixel values 0-255" in proto.graph.input[0].doc_string
        # the text names the one dtype this file takes (issue 37)
        dtype = "uint8" if feed.dtype == np.uint8 else "float32"
        for text in (proto.graph.input[0].doc_string,
                     json.loads(meta["kdarts.input"])["description"]):
            assert f"({dtype} only)" in text and "float32 or uint8" not in text
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(session.run(["logits"], {"images": feed})[0], want,
                                   atol=1e-4)

    loaded = tf.saved_model.load(results["saved_model"].path)
    assert json.loads(loaded.input_contract().numpy())["mean"] == mean
    with open(os.path.join(results["saved_model"].path, "assets.extra",
                           "kdarts_input.json")) as f:
        assert json.load(f)["dtype"] == "float32 or uint8"
    got = loaded.signatures["serving_uint8"](images=tf.constant(images))["logits"]
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4)


@pytest.mark.slow
def test_tflite_exports_match_keras_and_record_their_contract(tmp_path):
    """float32 within 1e-4 and dynamic-range int8 weights with the same top-1 classes, each
    checked with the LiteRT interpreter independently of export's own verification."""
    import json

    from kdarts.export import tflite_logits, tflite_metadata, tflite_runner

    model = EvalNetwork(DARTS_V2, num_classes=5, channels=4, layers=3, auxiliary=False,
                        seed=4, mean=[0.2, 0.4, 0.6], std=[0.3, 0.2, 0.1])
    model.build((None, 8, 8, 3))
    images = np.random.default_rng(5).integers(0, 256, (16, 8, 8, 3)).astype(np.float32)
    want = np.asarray(model(images, training=False))
    plain = export_model(model, tmp_path / "net.tflite", format="tflite")
    dynamic = export_model(model, tmp_path / "net_dynamic.tflite", format="tflite",
                           quantize="dynamic", sample_inputs=images)
    assert plain.max_abs_diff <= ATOL and plain.agreement == 1.0
    assert dynamic.quantize == "dynamic" and dynamic.agreement >= 0.98
    assert sorted(os.listdir(tmp_path)) == ["net.tflite", "net_dynamic.tflite"]
    for result in (plain, dynamic):
        runner = tflite_runner(result.path)
        (spec,) = runner.get_input_details().values()
        assert spec["dtype"] == np.float32 and list(spec["shape_signature"]) == [-1, 8, 8, 3]
        contract = json.loads(tflite_metadata(result.path)["kdarts.input"])
        assert contract == result.input_contract and contract["mean"] == [0.2, 0.4, 0.6]
        assert contract["dtype"] == "float32" and contract["pixel_range"] == [0.0, 255.0]
        got = tflite_logits(runner, images)
        assert got.shape == want.shape
        if result is plain:
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(np.argmax(got, -1), np.argmax(want, -1))


def test_tflite_verification_fails_loudly_with_the_numbers(tiny, tmp_path, monkeypatch):
    """Quantised models below the agreement threshold and float16 beyond its tolerance are
    refused, naming the numbers, and nothing is left behind (no conversion here)."""
    export_module = sys.modules["kdarts.image.export"]
    monkeypatch.setattr(sys.modules["kdarts.export.litert"], "write",
                        lambda model, artifact, *args: open(artifact, "wb").close())

    def shifted(format, artifact, samples, contract=None):
        outputs = []
        for x in samples:  # each image's runner-up class moves 0.5 above its top-1 class
            logits = np.asarray(tiny(x, training=False)).copy()
            rows = np.arange(len(logits))
            logits[rows, np.argsort(logits, -1)[:, -2]] = logits.max(-1) + 0.5
            outputs.append([logits])
        return outputs

    monkeypatch.setattr(export_module, "_run_artifact", shifted)
    images = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ExportError, match=r"dynamic LiteRT model .* agrees with the Keras "
                                          r"model's top-1 class on 0 of 8 images \(0\.0%, "
                                          r"needed 98%; max \|Δlogits\| \d"):
        export_model(tiny, tmp_path / "a.tflite", format="tflite", quantize="dynamic",
                     sample_inputs=images)
    with pytest.raises(ExportError, match=r"tflite artifact .* differs from the Keras model "
                                          r"by up to .* \(tolerance 0\.0"):
        export_model(tiny, tmp_path / "b.tflite", format="tflite", quantize="float16",
                     sample_inputs=images)
    assert os.listdir(tmp_path) == []
