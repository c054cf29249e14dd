"""README.md stays true: its Python blocks run (shrunk to a tiny size), the search block
finds what ``kdarts search`` finds, every option its commands use exists, and the package
exports every name it lists."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")

#: The tiny search both the README's block and ``kdarts search`` run in the test.
TINY_SEARCH = {"channels": 4, "layers": 3, "steps": 2, "epochs": 2, "max_examples": 300,
               "batch_size": 16}
#: The search the README's Python block says it equals.
SEARCH_CALL = 'kdarts.search_defaults("kdarts_digits", seed=0)'

# README's sizes → tiny ones. Every key must occur in the block: a README edit that drops
# one fails here, naming it, instead of silently running the full-size search.
SHRINK = {
    SEARCH_CALL: SEARCH_CALL[:-1] + ", " + ", ".join(f"{k}={v}" for k, v in TINY_SEARCH.items())
    + ")",
    "channels=16, layers=8,": "channels=4, layers=3,",
    "epochs=20, steps_per_epoch=steps": "epochs=1, steps_per_epoch=steps",
    "net.fit(train_ds, epochs=20,": "net.fit(train_ds.take(3), epochs=1,",
}
#: The deployment block reads the quickstart's export; the test feeds it the API block's.
DEPLOY = {"saved_models/quickstart.onnx": "saved_models/digits.onnx"}


def readme_text() -> str:
    with open(README, encoding="utf-8") as f:
        return f.read()


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def shrunk(code: str, replacements: dict) -> str:
    for old, new in replacements.items():
        assert old in code, f"README's Python block no longer contains {old!r}; update the test"
        code = code.replace(old, new)
    return code


def final_alpha(record_path) -> tuple[dict, float]:
    """The last epoch's activated α (both cells) and α steps in a search_record.json."""
    with open(record_path, encoding="utf-8") as f:
        record = json.load(f)
    last = record["epochs"][-1]
    return ({"normal": last["alpha_normal"], "reduce": last["alpha_reduce"]},
            record["batches"][-1]["alpha_steps"])


@pytest.mark.slow
def test_readme_python_blocks_run_and_search_as_the_command_does(tmp_path):
    """The API block (tiny) and ``kdarts search`` at the same size and seed, side by side:
    the same genotype and α, after α steps at the small-data step; then the deployment
    block runs on the block's ONNX export."""
    blocks = python_blocks(readme_text())
    api = [b for b in blocks if SEARCH_CALL in b]
    deploy = [b for b in blocks if "onnxruntime" in b]
    assert len(api) == 1 and len(deploy) == 1 and len(blocks) == 2, \
        "README's Python blocks changed; this test runs each of them"
    code = shrunk(api[0], SHRINK) + (
        "\nimport json\nprint(json.dumps({'genotype': genotype.to_dict(), 'onnx': "
        "result.path, 'diff': result.max_abs_diff}))\n")
    (tmp_path / "saved_models").mkdir()  # as in a clone of the repository
    cli_out = tmp_path / "cli-search"
    tiny_args = [a for k, v in TINY_SEARCH.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for command in ([sys.executable, "-c", code],
                             [sys.executable, "-m", "kdarts.cli", "search", "--seed", "0",
                              *tiny_args, "--out", str(cli_out)])]
    (block_out, block_err), (cli_stdout, cli_err) = [p.communicate(timeout=900) for p in procs]
    assert procs[0].returncode == 0, block_err[-4000:]
    assert procs[1].returncode == 0, (cli_stdout + cli_err)[-4000:]
    assert "Warning" not in block_err, block_err[-4000:]  # e.g. Keras's shuffle warning

    summary = json.loads(block_out.strip().splitlines()[-1])
    assert summary["diff"] <= 1e-4
    assert os.path.exists(summary["onnx"])
    for name in ("genotype.json", "search_record.json", "alpha.png", "genotype.png",
                 "checkpoint.weights.h5"):
        assert (tmp_path / "runs" / "api" / name).exists(), name

    with open(cli_out / "genotype.json", encoding="utf-8") as f:
        cli_genotype = json.load(f)
    assert cli_genotype.pop("cost")["params"] > 0  # the command also records the cost
    assert summary["genotype"] == cli_genotype
    block_alpha, block_steps = final_alpha(tmp_path / "runs" / "api" / "search_record.json")
    cli_alpha, cli_steps = final_alpha(cli_out / "search_record.json")
    assert block_steps == cli_steps >= 1  # α moved, at the command's α step
    assert block_alpha == cli_alpha

    deployed = subprocess.run([sys.executable, "-c", shrunk(deploy[0], DEPLOY)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    assert deployed.returncode == 0, deployed.stderr[-4000:]
    assert "0-255" in deployed.stdout  # the contract's description, read from the file


def test_search_defaults_are_the_commands_options(tmp_path):
    """``kdarts.search_defaults`` resolves and checks options as ``kdarts search`` does
    (the small-data α step on the digits, the paper's on cifar10, the same one-line
    refusals), without importing TensorFlow."""
    code = """
import sys, kdarts
from kdarts.runs.search import search_options
digits = kdarts.search_defaults("kdarts_digits", seed=3, channels=4)
assert dict(digits.options) == search_options({"seed": 3, "channels": 4})[0]
assert (digits["arch_lr"], digits["threshold"], digits.epochs, digits.seed) == (0.05, 50.0, 8, 3)
cifar = kdarts.search_defaults("cifar10")
assert (cifar["arch_lr"], cifar["threshold"], cifar["channels"], cifar.batch_size) == (3e-4, 1.0, 16, 64)
for bad, words in (({"chanels": 4}, "chanels"), ({"steps": 0}, "--steps")):
    try:
        kdarts.search_defaults(**bad)
    except Exception as err:
        assert words in str(err) and "\\n" not in str(err), err
    else:
        raise AssertionError(bad)
try:
    kdarts.search_defaults("kdarts_text")
except Exception as err:
    assert "corpus" in str(err), err
else:
    raise AssertionError("a corpus")
assert "tensorflow" not in sys.modules
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def readme_commands(text: str) -> list[list[str]]:
    """Every ``kdarts ...`` command of README's bash blocks, as words (continued lines
    joined, comments and leading ``NAME=value`` assignments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while "&&" in words:  # `pip install ... && kdarts quickstart`
                cut = words.index("&&")
                commands += [words[:cut]] if words[:1] == ["kdarts"] else []
                words = words[cut + 1:]
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            if words[:1] == ["kdarts"]:
                commands.append(words)
    return commands


def test_readme_commands_use_options_their_commands_have():
    """Each ``kdarts`` line names a real command and only options it has (a drift check
    without TensorFlow: click's own parameter lists, as ``--help`` prints them)."""
    from kdarts.cli import main

    def options(command) -> set:
        return {name for param in command.params for name in param.opts + param.secondary_opts
                if name.startswith("-")} | {"--help", "-h"}

    commands = readme_commands(readme_text())
    assert {"search", "train", "show", "export", "generate", "quickstart"} <= {
        next(w for w in words[1:] if not w.startswith("-")) for words in commands}
    for words in commands:
        group_options, rest = options(main), words[1:]
        while rest and rest[0].startswith("-"):  # the group's own, e.g. --cpu-devices 2
            assert rest[0] in group_options, f"README: {' '.join(words)}: {rest[0]}"
            rest = rest[2:]
        assert rest and rest[0] in main.commands, f"README: {' '.join(words)}: no such command"
        command = main.commands[rest[0]]
        used = {w.split("=", 1)[0] for w in rest[1:] if w.startswith("-")}
        unknown = used - options(command)
        assert not unknown, f"README: {' '.join(words)}: kdarts {rest[0]} has no {unknown}"
        command.make_context(rest[0], rest[1:])  # values of the right types and choices


def test_every_public_name_exists():
    import kdarts

    missing = [name for name in kdarts.__all__ if not hasattr(kdarts, name)]
    assert not missing
    namespace: dict = {}
    exec("from kdarts import *", namespace)
    assert set(kdarts.__all__) <= set(namespace)
    assert callable(namespace["compile_eval_network"]) and callable(namespace["export_model"])
    import kdarts.image.export  # the module and the function have different names

    assert kdarts.image.export.export_model is kdarts.export_model
