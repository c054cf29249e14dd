"""README.md stays true: its Python block runs (shrunk to a tiny size) and the package
exports every name it lists."""

import os
import re
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

# README's sizes → tiny ones. Every key must occur in the block: a README edit that drops
# one fails here, naming it, instead of silently running the full-size search.
SHRINK = {
    "layers=5,": "layers=3, steps=2, multiplier=2,",
    "channels=8,": "channels=4,",
    "epochs=8, steps_per_epoch=steps,": "epochs=1, steps_per_epoch=3,",
    "channels=16, layers=8,": "channels=4, layers=3,",
    "epochs=20, steps_per_epoch=steps": "epochs=1, steps_per_epoch=steps",
    "net.fit(train_ds, epochs=20,": "net.fit(train_ds.take(3), epochs=1,",
}


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.slow
def test_readme_python_block_runs(tmp_path):
    with open(README, encoding="utf-8") as f:
        blocks = python_blocks(f.read())
    assert len(blocks) == 1, "README has one Python block; this test runs it"
    code = blocks[0]
    for old, new in SHRINK.items():
        assert old in code, f"README's Python block no longer contains {old!r}; update SHRINK"
        code = code.replace(old, new)
    code += ("\nimport json\nprint(json.dumps({'genotype': genotype.to_dict(), 'onnx': "
             "result.path, 'diff': result.max_abs_diff}))\n")
    (tmp_path / "saved_models").mkdir()  # as in a clone of the repository
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Warning" not in done.stderr, done.stderr[-4000:]  # e.g. Keras's shuffle warning
    import json

    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["diff"] <= 1e-4
    assert os.path.exists(summary["onnx"])
    for name in ("genotype.json", "search_record.json", "alpha.png", "schedule.png",
                 "genotype.png", "checkpoint.weights.h5"):
        assert (tmp_path / "runs" / "api" / name).exists(), name


def test_every_public_name_exists():
    import kdarts

    missing = [name for name in kdarts.__all__ if not hasattr(kdarts, name)]
    assert not missing
    namespace: dict = {}
    exec("from kdarts import *", namespace)
    assert set(kdarts.__all__) <= set(namespace)
    assert callable(namespace["compile_eval_network"]) and callable(namespace["export_model"])
    import kdarts.export  # the module and the function have different names

    assert kdarts.export.export_model is kdarts.export_model
