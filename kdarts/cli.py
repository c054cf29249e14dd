"""The ``kdarts`` command line: search, train, show, export, quickstart.

Each command parses its options, checks every input it can before any
TensorFlow work (a bad dataset name, a genotype file that does not validate,
an output folder holding another run), then calls the Python API and reports
where it wrote its outputs. Errors are one line (``Error: ...``) and a
non-zero exit status.

    kdarts quickstart                         # search → train → export on the digits
    kdarts search --out runs/search           # architecture search (DARTS-PRIME defaults)
    kdarts search --out runs/search --resume  # continue an interrupted search
    kdarts train --genotype runs/search/genotype.json --out runs/train
    kdarts show runs/search/genotype.json --png cell.png
    kdarts export runs/train/model.keras --format onnx
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from importlib import metadata

# Quiet TensorFlow's C++ INFO logs. Effective only if TensorFlow is not imported yet
# (today `import kdarts` already imports it, so the package __init__ would need this line).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import click  # noqa: E402

from kdarts.data import DATASETS, DEFAULT_DATASET, DatasetError, check_dataset_name  # noqa: E402
from kdarts.genotype import (  # noqa: E402
    PRIMITIVES,
    GenotypeError,
    atomic_write_text,
    resolve_genotype,
)

SEARCH_DIR = os.path.join("runs", "search")
TRAIN_DIR = os.path.join("runs", "train")
EXPORT_DIR = "saved_models"

# Search defaults: SPEC §7's method (crb, dynamic schedule k=10 with the dynamic split,
# proximity ρ=0.1) at a size the 8x8 digits search in a few minutes on 2 CPU cores.
SEARCH_DEFAULTS = dict(
    dataset=DEFAULT_DATASET, epochs=8, activation="crb", schedule="dynamic", every=10,
    reg="proximity", rho=0.1, admm_every=10, split="dynamic", batch_size=32, channels=8,
    layers=5, steps=4, primitives=None, max_examples=None, seed=0, unrolled=False,
)
# Evaluation training defaults for the digits (DARTS's recipe, smaller and shorter).
TRAIN_DEFAULTS = dict(
    dataset=DEFAULT_DATASET, epochs=20, channels=16, layers=8, batch_size=64, cutout=0,
    auxiliary=True, drop_path=0.1, lr=0.025, seed=0, max_examples=None,
)

SEARCH_FILES = ("run.json", "genotype.json", "history.csv", "search_record.json",
                "checkpoint.weights.h5", "checkpoint.json", "alpha.png", "schedule.png",
                "genotype.png")
EXPORT_SUFFIX = {"onnx": ".onnx", "keras": ".keras", "saved_model": ""}


def _version() -> str:
    try:
        return metadata.version("kdarts")
    except metadata.PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                               "max_content_width": 100})
@click.version_option(_version(), prog_name="kdarts")
@click.option("--intra-op-threads", type=click.IntRange(min=0), default=1,
              help="Threads per TensorFlow kernel (0: all cores). 1 runs the search's many "
                   "small kernels side by side, which is faster on a CPU.")
@click.option("--inter-op-threads", type=click.IntRange(min=0), default=0,
              help="TensorFlow kernels run at once (0: one per core).")
@click.pass_context
def main(ctx: click.Context, intra_op_threads: int, inter_op_threads: int):
    """kdarts: differentiable architecture search (DARTS, DARTS-PRIME) for Keras 3.

    Start with `kdarts quickstart`: it searches a cell on the built-in 8x8 digits,
    trains the found network, and exports it to ONNX, in a few minutes on a CPU.
    """
    from kdarts.runtime import set_cpu_threads

    try:
        set_cpu_threads(intra_op_threads, inter_op_threads)
    except RuntimeError as err:  # invoked inside a process that already runs TensorFlow
        defaults = click.core.ParameterSource.DEFAULT
        if any(ctx.get_parameter_source(p) != defaults
               for p in ("intra_op_threads", "inter_op_threads")):
            click.echo(f"Warning: {err}; keeping them.", err=True)


# ---------------------------------------------------------------------------- helpers


def _fail(message: str) -> click.ClickException:
    """A one-line error (newlines folded) for click to print as ``Error: ...``."""
    return click.ClickException(" ".join(str(message).split()))


def _rel(path: str) -> str:
    """``path`` relative to the working directory when it is inside it (shorter output)."""
    path = os.path.abspath(path)
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _write_json(path: str, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise _fail(f"{_rel(path)}: cannot read {what}: {err}") from None
    if not isinstance(data, dict):
        raise _fail(f"{_rel(path)}: not a kdarts {what} (expected a JSON object)")
    return data


def _check_dataset(name: str) -> None:
    try:
        check_dataset_name(name)
    except DatasetError as err:
        raise _fail(err) from None


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


def _truncate_csv(path: str, epochs: int) -> None:
    """Keep the header and the rows of epochs ``< epochs`` of a CSVLogger file (resume)."""
    if not os.path.exists(path):
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) < epochs]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(kept)
    atomic_write_text(path, buffer.getvalue())


def _progress_callback(epochs: int, steps_per_epoch: int, keys: dict[str, str]):
    """A keras callback drawing one tqdm bar per epoch; ``keys``: log name → short label."""
    import keras
    from tqdm.auto import tqdm

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.bar = None
            self.first = True

        def _postfix(self, logs):
            out = {}
            for key, label in keys.items():
                if logs and key in logs:
                    value = float(logs[key])
                    out[label] = (f"{value:.0f}" if label in ("α steps", "pruned")
                                  else f"{value:.3g}")
            return out

        def on_epoch_begin(self, epoch, logs=None):
            desc = f"epoch {epoch + 1}/{epochs}"
            if self.first:
                desc += " (tracing)"
            interactive = sys.stderr.isatty()
            self.bar = tqdm(total=steps_per_epoch, desc=desc, unit="step", leave=True,
                            dynamic_ncols=True, mininterval=0.2 if interactive else 5.0)

        def on_train_batch_end(self, batch, logs=None):
            if self.first:
                self.first = False
                self.bar.set_description(self.bar.desc.replace(" (tracing)", ""))
            self.bar.update(1)
            if batch % 5 == 0:
                self.bar.set_postfix(self._postfix(logs), refresh=False)

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is not None:
                self.bar.set_postfix(self._postfix(logs), refresh=False)
                self.bar.close()
                self.bar = None

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress()


def _stop_after(epoch_count: int):
    import keras

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 >= epoch_count:
                self.model.stop_training = True

    return StopAfter()


# ----------------------------------------------------------------------------- search


def _search_args(options: dict) -> dict:
    """The arguments that define a search run (compared on --resume)."""
    args = {key: options[key] for key in SEARCH_DEFAULTS}
    if args["primitives"] is not None:
        args["primitives"] = list(args["primitives"])
    return args


def _parse_primitives(value: str | None, activation: str) -> tuple[str, ...] | None:
    if value is None or value.strip() in ("", "all"):
        return None
    names = tuple(p.strip() for p in value.split(",") if p.strip())
    unknown = [p for p in names if p not in PRIMITIVES]
    if unknown:
        raise _fail(f"--primitives: unknown op(s) {', '.join(unknown)}; valid: "
                    f"{', '.join(PRIMITIVES)}")
    if len(set(names)) != len(names):
        raise _fail(f"--primitives: {value!r} lists an op twice")
    if activation == "crb" and "none" in names:
        raise _fail("--primitives: 'none' is not a candidate with --activation crb "
                    "(an op is pruned instead)")
    if not [p for p in names if p != "none"]:
        raise _fail("--primitives: need at least one op other than 'none'")
    return names


def _describe_diff(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new), key=lambda k: list(SEARCH_DEFAULTS).index(k)
                  if k in SEARCH_DEFAULTS else 99)
    diffs = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
    return "; ".join(diffs)


def _check_search_dir(out: str, args: dict, resume: bool | str) -> dict | None:
    """Decide whether ``out`` may receive this search; returns the checkpoint state to
    resume from, or None for a fresh start. Raises a one-line error otherwise.

    ``resume``: True (``--resume``), False, or ``"auto"`` (resume if possible).
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise _fail(f"--out {_rel(out)} is a file, not a folder")
    run_path = os.path.join(out, "run.json")
    ckpt_weights = os.path.join(out, "checkpoint.weights.h5")
    ckpt_state = os.path.join(out, "checkpoint.json")
    existing = _read_json(run_path, "run.json") if os.path.exists(run_path) else None
    if existing is not None and (existing.get("command") != "search"
                                 or not isinstance(existing.get("args"), dict)):
        raise _fail(f"{_rel(run_path)} is not a kdarts search run; choose another --out")
    has_ckpt = os.path.exists(ckpt_weights) and os.path.exists(ckpt_state)
    old = existing["args"] if existing else None
    if old is not None and old != args:
        hint = ("pass the same arguments to resume it (see its run.json)" if resume is True
                else "choose another --out (or pass its arguments with --resume)")
        raise _fail(f"--out {_rel(out)} holds a different search run "
                    f"({_describe_diff(old, args)}); {hint}; nothing was changed")
    if resume is True and not has_ckpt:
        raise _fail(f"--resume: no checkpoint in {_rel(out)} (checkpoint.weights.h5 and "
                    "checkpoint.json are written at the end of each epoch); run without "
                    "--resume to start the search")
    if has_ckpt and old is None:
        raise _fail(f"{_rel(out)} holds a checkpoint but no run.json; choose another --out")
    if has_ckpt:
        state = _read_json(ckpt_state, "checkpoint.json")
        if not resume:
            raise _fail(f"--out {_rel(out)} already holds this search (checkpoint after epoch "
                        f"{state.get('epoch')} of {args['epochs']}); pass --resume to continue "
                        "it, or choose another --out")
        return state
    if old is None:
        ours = [f for f in SEARCH_FILES if os.path.exists(os.path.join(out, f))]
        if ours:
            raise _fail(f"--out {_rel(out)} holds {', '.join(ours)} from an unknown run "
                        "(no run.json); choose another --out")
    return None


def run_search(*, out: str, resume: bool | str = False, download: bool = False,
               data_dir: str | None = None, stop_after_epoch: int | None = None,
               **options) -> dict:
    """The ``search`` command's work; returns a summary dict. Raises ClickException."""
    opts = {**SEARCH_DEFAULTS, **options}
    _check_dataset(opts["dataset"])
    primitives = _parse_primitives(opts["primitives"], opts["activation"])
    opts["primitives"] = list(primitives) if primitives else None
    if opts["steps"] < 1:
        raise _fail(f"--steps must be >= 1, got {opts['steps']}")
    args = _search_args(opts)
    out = os.path.abspath(out)
    state = _check_search_dir(out, args, resume)

    t_start = time.perf_counter()
    import keras

    from kdarts.data import search_datasets
    from kdarts.plots import plot_alpha, plot_genotype, plot_schedule
    from kdarts.search import ADMM, DynamicSchedule, FixedSchedule, NoRegularizer, Proximity
    from kdarts.search import SearchNetwork
    from kdarts.search.callbacks import (
        CHECKPOINT_WEIGHTS,
        SearchCheckpoint,
        SearchRecorder,
        checkpoint_epoch,
    )

    try:
        weight_ds, search_ds, info, steps_per_epoch = search_datasets(
            opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
            split=opts["split"], every=opts["every"], data_dir=data_dir,
            max_examples=opts["max_examples"], download=download)
    except (DatasetError, ValueError) as err:
        raise _fail(err) from None
    t_data = time.perf_counter() - t_start

    os.makedirs(out, exist_ok=True)
    if state is None:
        _write_json(os.path.join(out, "run.json"), {
            "command": "search", "kdarts": _version(), "args": args,
            "steps_per_epoch": steps_per_epoch, "num_classes": info.num_classes,
            "image_shape": list(info.image_shape)})

    _seed_everything(opts["seed"])
    model = SearchNetwork(
        info.num_classes, channels=opts["channels"], layers=opts["layers"],
        steps=opts["steps"], multiplier=opts["steps"], activation=opts["activation"],
        primitives=primitives)
    model.build((None,) + tuple(info.image_shape))
    schedule = (DynamicSchedule(every=opts["every"]) if opts["schedule"] == "dynamic"
                else FixedSchedule(every=opts["every"]))
    regularizer = {"proximity": lambda: Proximity(rho=opts["rho"]),
                   "admm": lambda: ADMM(rho=opts["rho"], every=opts["admm_every"]),
                   "none": NoRegularizer}[opts["reg"]]()
    model.compile(schedule=schedule, regularizer=regularizer, search_data=search_ds,
                  unrolled=opts["unrolled"])
    initial_epoch = 0
    if state is not None:
        model.build_optimizers()
        model.load_weights(os.path.join(out, CHECKPOINT_WEIGHTS))
        try:
            initial_epoch = checkpoint_epoch(model)
        except ValueError as err:
            raise _fail(f"{_rel(out)}: {err}") from None
        _truncate_csv(os.path.join(out, "history.csv"), initial_epoch)
        if initial_epoch >= opts["epochs"]:
            click.echo(f"{_rel(out)} holds a complete search ({initial_epoch} epochs); "
                       "writing its genotype and plots again")
        else:
            click.echo(f"resuming {_rel(out)} after epoch {initial_epoch} of {opts['epochs']} "
                       f"({int(model.search_step.numpy())} steps, "
                       f"{int(model.alpha_steps.numpy())} α steps)")
    epochs = opts["epochs"]
    if initial_epoch < epochs:
        click.echo(f"search: {info.name} {info.image_shape[0]}x{info.image_shape[1]}, "
                   f"{opts['activation']} / {opts['schedule']} k={opts['every']} / "
                   f"{opts['reg']} ρ={opts['rho']} / {opts['split']} split, C={opts['channels']}, "
                   f"{opts['layers']} layers, {steps_per_epoch} steps per epoch; the first "
                   "epoch starts with tracing the step (a minute or two)")
    progress = _progress_callback(epochs, steps_per_epoch, {
        "loss": "loss", "accuracy": "acc", "alpha_steps": "α steps", "pruned_ops": "pruned"})
    callbacks = [
        SearchRecorder(os.path.join(out, "search_record.json")),
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv"), append=state is not None),
        SearchCheckpoint(out),
        progress,
    ]
    if stop_after_epoch is not None:
        callbacks.append(_stop_after(stop_after_epoch))
    t_fit = time.perf_counter()
    try:
        model.fit(weight_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                  initial_epoch=initial_epoch, callbacks=callbacks, verbose=0, shuffle=False)
    except KeyboardInterrupt:
        progress.on_train_end()
        done = checkpoint_epoch_from_file(out)
        raise _fail(f"interrupted; the last checkpoint ({done} epoch(s) done) is in "
                    f"{_rel(out)}: continue with the same command and --resume") from None
    t_fit = time.perf_counter() - t_fit
    completed = int(model.search_step.numpy()) // steps_per_epoch
    summary = dict(out=out, epochs_done=completed, data_s=t_data, search_s=t_fit,
                   complete=completed >= epochs)
    if completed < epochs:
        click.echo(f"stopped after epoch {completed} of {epochs} (--stop-after-epoch); "
                   f"checkpoint in {_rel(out)}: continue with --resume")
        return summary

    genotype = model.genotype()
    genotype.save(os.path.join(out, "genotype.json"))
    record = os.path.join(out, "search_record.json")
    plot_alpha(record, os.path.join(out, "alpha.png"))
    plot_schedule(record, os.path.join(out, "schedule.png"))
    plot_genotype(genotype, os.path.join(out, "genotype.png"))
    total = time.perf_counter() - t_start
    alpha_steps = int(model.alpha_steps.numpy())
    pruned = int(sum(float((1 - m.numpy()).sum()) for m in (model.mask_normal,
                                                           model.mask_reduce)))
    click.echo(str(genotype))
    click.echo(f"search done in {_fmt_time(total)} ({completed} epochs, "
               f"{int(model.search_step.numpy())} weight steps, {alpha_steps} α steps"
               + (f", {pruned} ops pruned" if opts["activation"] == "crb" else "")
               + f"): genotype → {_rel(os.path.join(out, 'genotype.json'))}; "
               f"record, history, checkpoint and plots (alpha.png, schedule.png, "
               f"genotype.png) in {_rel(out)}")
    summary.update(genotype=genotype, total_s=total, alpha_steps=alpha_steps)
    return summary


def checkpoint_epoch_from_file(out: str) -> int:
    try:
        return int(_read_json(os.path.join(out, "checkpoint.json"), "checkpoint.json")["epoch"])
    except (click.ClickException, KeyError, TypeError, ValueError):
        return 0


def _search_options(func):
    d = SEARCH_DEFAULTS
    options = [
        click.option("--dataset", default=d["dataset"],
                     help=f"TFDS dataset: {', '.join(DATASETS)} (only the default needs no "
                          "download)."),
        click.option("--epochs", type=click.IntRange(min=1), default=d["epochs"],
                     help="Search epochs (SPEC: 50 on CIFAR-10)."),
        click.option("--activation", type=click.Choice(["crb", "softmax"]),
                     default=d["activation"],
                     help="α activation: crb (clip to [0,1], prune at 0) or softmax (DARTS)."),
        click.option("--schedule", type=click.Choice(["dynamic", "fixed"]), default=d["schedule"],
                     help="When to take α steps: dynamic (FI-informed) or fixed (every k steps)."),
        click.option("--every", type=click.IntRange(min=1), default=d["every"],
                     help="k: on average one α step per k weight steps."),
        click.option("--reg", type=click.Choice(["proximity", "admm", "none"]), default=d["reg"],
                     help="Regulariser pulling α towards its discretisation."),
        click.option("--rho", type=click.FloatRange(min=0.0), default=d["rho"],
                     help="ρ, the regulariser's weight."),
        click.option("--admm-every", type=click.IntRange(min=1), default=d["admm_every"],
                     help="ADMM: update Z and U every this many α steps."),
        click.option("--split", type=click.Choice(["dynamic", "half"]), default=d["split"],
                     help="Search split: 1/(1+k) of the training data (dynamic) or 50/50."),
        click.option("--batch-size", type=click.IntRange(min=1), default=d["batch_size"]),
        click.option("--channels", type=click.IntRange(min=1), default=d["channels"],
                     help="C of the search network (SPEC: 16)."),
        click.option("--layers", type=click.IntRange(min=3), default=d["layers"],
                     help="Cells of the search network (SPEC: 8)."),
        click.option("--steps", type=click.IntRange(min=1), default=d["steps"],
                     help="Intermediate nodes per cell (all concatenated)."),
        click.option("--primitives", default=None,
                     help="Comma-separated candidate ops [default: all; without 'none' for crb]."),
        click.option("--max-examples", type=click.IntRange(min=1), default=None,
                     help="Use only the first N training examples (quick tries)."),
        click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=d["seed"],
                     help="Seed of the data order, augmentation and initialisation."),
        click.option("--unrolled", is_flag=True, default=d["unrolled"],
                     help="DARTS's second-order α gradient (slower)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@main.command()
@_search_options
@click.option("--out", type=click.Path(), default=SEARCH_DIR,
              help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue the interrupted search in --out "
              "(same arguments).")
@click.option("--download", is_flag=True, help="Download the dataset if needed (internet).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="TFDS data folder [default: $TFDS_DATA_DIR or ~/tensorflow_datasets].")
@click.option("--stop-after-epoch", type=click.IntRange(min=1), default=None, hidden=True)
def search(out, resume, download, data_dir, stop_after_epoch, **options):
    """Search a cell architecture (DARTS-PRIME: crb, dynamic schedule, proximity).

    Writes to --out: run.json (the arguments, first), history.csv (per epoch),
    search_record.json (α and the schedule, for the plots), checkpoint.weights.h5 and
    checkpoint.json (every epoch; --resume continues from them), genotype.json, and
    the plots alpha.png, schedule.png and genotype.png.
    """
    run_search(out=out, resume=resume, download=download, data_dir=data_dir,
               stop_after_epoch=stop_after_epoch, **options)


# ------------------------------------------------------------------------------ train


def _load_genotype(spec: str):
    if os.path.isdir(spec):
        spec = os.path.join(spec, "genotype.json")
    try:
        return resolve_genotype(spec)
    except GenotypeError as err:
        raise _fail(err) from None


def run_train(*, genotype: str, out: str, overwrite: bool = False, download: bool = False,
              data_dir: str | None = None, **options) -> dict:
    """The ``train`` command's work; returns a summary dict. Raises ClickException."""
    opts = {**TRAIN_DEFAULTS, **options}
    geno = _load_genotype(genotype)
    _check_dataset(opts["dataset"])
    if not 0.0 <= opts["drop_path"] < 1.0:
        raise _fail(f"--drop-path must be in [0, 1), got {opts['drop_path']}")
    out = os.path.abspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise _fail(f"--out {_rel(out)} is a file, not a folder")
    existing = [f for f in ("model.keras", "metrics.json")
                if os.path.exists(os.path.join(out, f))]
    if existing and not overwrite:
        raise _fail(f"--out {_rel(out)} already holds {', '.join(existing)}; choose another "
                    "--out or pass --overwrite")

    t_start = time.perf_counter()
    import keras

    from kdarts.data import train_datasets
    from kdarts.eval import EvalNetwork, compile_eval_network
    from kdarts.export import ExportError, export

    try:
        train_ds, test_ds, info, steps = train_datasets(
            opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
            cutout=opts["cutout"], data_dir=data_dir, max_examples=opts["max_examples"],
            download=download)
    except (DatasetError, ValueError) as err:
        raise _fail(err) from None
    os.makedirs(out, exist_ok=True)
    _seed_everything(opts["seed"])
    model = EvalNetwork(geno, info.num_classes, channels=opts["channels"],
                        layers=opts["layers"], auxiliary=opts["auxiliary"],
                        drop_path_prob=opts["drop_path"], seed=opts["seed"])
    model.build((None,) + tuple(info.image_shape))
    callbacks = compile_eval_network(model, epochs=opts["epochs"], steps_per_epoch=steps,
                                     lr=opts["lr"])
    params = model.parameter_count()
    num_train = min(info.num_train, opts["max_examples"] or info.num_train)
    click.echo(f"train: {info.name}, {num_train} training images, C={opts['channels']}, "
               f"{opts['layers']} layers, "
               f"{params / 1e3:.1f}k parameters, {opts['epochs']} epochs of {steps} steps")
    callbacks += [
        keras.callbacks.CSVLogger(os.path.join(out, "history.csv")),
        _progress_callback(opts["epochs"], steps, {"loss": "loss", "accuracy": "acc"}),
    ]
    t_fit = time.perf_counter()
    history = model.fit(train_ds, epochs=opts["epochs"], callbacks=callbacks, verbose=0,
                        shuffle=False)
    t_fit = time.perf_counter() - t_fit
    result = model.evaluate(test_ds, return_dict=True, verbose=0)
    test_acc, test_loss = float(result["accuracy"]), float(result["loss"])
    try:
        exported = export(model, os.path.join(out, "model.keras"), "keras")
    except (ExportError, ValueError) as err:
        raise _fail(err) from None
    total = time.perf_counter() - t_start
    metrics = {
        "test_accuracy": test_acc, "test_loss": test_loss,
        "train_accuracy": float(history.history["accuracy"][-1]),
        "train_loss": float(history.history["loss"][-1]),
        "num_test": info.num_test, "parameters": params, "epochs": opts["epochs"],
        "train_seconds": round(t_fit, 1), "total_seconds": round(total, 1),
        "genotype": geno.to_dict(),
        "args": {**{k: opts[k] for k in TRAIN_DEFAULTS}, "genotype": genotype},
        "kdarts": _version(),
    }
    _write_json(os.path.join(out, "metrics.json"), metrics)
    click.echo(f"test accuracy {100 * test_acc:.2f}% on {info.num_test} test images "
               f"(test loss {test_loss:.3f}); trained in {_fmt_time(t_fit)}")
    click.echo(f"train done in {_fmt_time(total)}: model → {_rel(exported.path)} (reload "
               f"verified, max |Δ| {exported.max_abs_diff:.1e}), metrics → "
               f"{_rel(os.path.join(out, 'metrics.json'))}")
    return dict(out=out, test_accuracy=test_acc, model=exported.path, total_s=total,
                train_s=t_fit, parameters=params)


@main.command()
@click.option("--genotype", default=os.path.join(SEARCH_DIR, "genotype.json"),
              help="A genotype JSON file, a search folder holding one, or a preset "
                   "(DARTS_V1, DARTS_V2).")
@click.option("--dataset", default=TRAIN_DEFAULTS["dataset"],
              help=f"TFDS dataset: {', '.join(DATASETS)}.")
@click.option("--epochs", type=click.IntRange(min=1), default=TRAIN_DEFAULTS["epochs"],
              help="Training epochs (DARTS: 600 on CIFAR-10).")
@click.option("--channels", type=click.IntRange(min=1), default=TRAIN_DEFAULTS["channels"],
              help="C of the network (DARTS: 36).")
@click.option("--layers", type=click.IntRange(min=1), default=TRAIN_DEFAULTS["layers"],
              help="Cells (DARTS: 20).")
@click.option("--batch-size", type=click.IntRange(min=1), default=TRAIN_DEFAULTS["batch_size"],
              help="DARTS: 96.")
@click.option("--cutout", type=click.IntRange(min=0), default=TRAIN_DEFAULTS["cutout"],
              help="Cutout square side in pixels, 0 for none (DARTS: 16 on 32x32).")
@click.option("--auxiliary/--no-auxiliary", default=TRAIN_DEFAULTS["auxiliary"],
              help="Auxiliary head (loss weight 0.4) during training.")
@click.option("--drop-path", type=float, default=TRAIN_DEFAULTS["drop_path"],
              help="Final drop-path probability of the linear ramp (DARTS: 0.2).")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True),
              default=TRAIN_DEFAULTS["lr"], help="Initial learning rate (cosine to 0).")
@click.option("--max-examples", type=click.IntRange(min=1), default=None,
              help="Use only the first N training examples (quick tries).")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=TRAIN_DEFAULTS["seed"])
@click.option("--out", type=click.Path(), default=TRAIN_DIR, help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace model.keras/metrics.json in --out.")
@click.option("--download", is_flag=True, help="Download the dataset if needed (internet).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="TFDS data folder [default: $TFDS_DATA_DIR or ~/tensorflow_datasets].")
def train(genotype, out, overwrite, download, data_dir, **options):
    """Train a genotype's network from scratch and measure its test accuracy.

    Writes model.keras (the whole model, reload-verified), metrics.json (test
    accuracy and the run's arguments) and history.csv to --out.
    """
    run_train(genotype=genotype, out=out, overwrite=overwrite, download=download,
              data_dir=data_dir, **options)


# ------------------------------------------------------------------------------- show


@main.command()
@click.argument("genotype", default=os.path.join(SEARCH_DIR, "genotype.json"))
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw both cells to this PNG file.")
def show(genotype, png):
    """Print a genotype's cells (a JSON file, a search folder, or a preset name)."""
    geno = _load_genotype(genotype)
    click.echo(str(geno))
    if png:
        from kdarts.plots import plot_genotype

        click.echo(f"cells drawn → {_rel(plot_genotype(geno, png))}")


# ----------------------------------------------------------------------------- export


def _default_export_path(model_path: str, fmt: str) -> str:
    stem = os.path.splitext(os.path.basename(os.path.abspath(model_path)))[0]
    if stem == "model":  # runs/train/model.keras → saved_models/train.onnx
        stem = os.path.basename(os.path.dirname(os.path.abspath(model_path))) or stem
    return os.path.join(EXPORT_DIR, stem + EXPORT_SUFFIX[fmt])


def run_export(model_path: str, fmt: str = "onnx", out: str | None = None,
               verify: bool = True) -> dict:
    """The ``export`` command's work; returns a summary dict. Raises ClickException."""
    from kdarts.export import ExportError, ModelLoadError, export, load_model

    out = os.path.abspath(out or _default_export_path(model_path, fmt))
    t_start = time.perf_counter()
    try:
        model = load_model(model_path)
    except ModelLoadError as err:
        raise _fail(err) from None
    parent = os.path.dirname(out)
    if not os.path.exists(parent):
        try:
            os.makedirs(parent)
        except OSError as err:
            raise _fail(f"cannot create {_rel(parent)}: {err.strerror}") from None
    try:
        result = export(model, out, fmt, verify=verify)
    except (ExportError, ValueError, TypeError) as err:
        raise _fail(err) from None
    elapsed = time.perf_counter() - t_start
    check = ("not verified (--no-verify)" if result.max_abs_diff is None
             else f"verified against the Keras model: max |Δlogits| = {result.max_abs_diff:.2e}")
    click.echo(f"exported {fmt} → {_rel(result.path)} ({_size(result.path)}) in "
               f"{_fmt_time(elapsed)}; {check}")
    return dict(path=result.path, max_abs_diff=result.max_abs_diff, total_s=elapsed)


def _size(path: str) -> str:
    if os.path.isdir(path):
        total = sum(os.path.getsize(os.path.join(d, f))
                    for d, _, files in os.walk(path) for f in files)
    else:
        total = os.path.getsize(path)
    return f"{total / 1e6:.2f} MB" if total >= 1e5 else f"{total / 1e3:.1f} kB"


@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx", "saved_model", "keras"]),
              default="onnx", help="Artifact format.")
@click.option("--out", default=None,
              help=f"Destination [default: {EXPORT_DIR}/<name>.onnx, .keras, or a folder "
                   "for saved_model].")
@click.option("--verify/--no-verify", default=True,
              help="Reload the artifact and compare its logits with the Keras model's.")
def export_command(model, fmt, out, verify):
    """Export a trained MODEL.keras for inference (ONNX, SavedModel or .keras).

    The inference graph (no auxiliary head, no drop-path) takes float32 NHWC
    `images` with a dynamic batch and returns `logits`. The artifact is written
    next to its destination, verified, then moved into place.
    """
    run_export(model, fmt, out, verify)


# ------------------------------------------------------------------------- quickstart


@main.command()
@click.option("--out", type=click.Path(), default=os.path.join("runs", "quickstart"),
              help="Folder for the search/ and train/ outputs.")
@click.option("--export-to", default=os.path.join(EXPORT_DIR, "quickstart.onnx"),
              help="The exported ONNX model.")
def quickstart(out, export_to):
    """Search → train → export ONNX on the built-in digits, with the default settings.

    A search already complete in OUT/search is reused (an interrupted one
    resumes); training is redone. Takes a few minutes on 2 CPU cores.
    """
    t0 = time.perf_counter()
    click.echo("== 1/3 search ==")
    s = run_search(out=os.path.join(out, "search"), resume="auto")
    click.echo("== 2/3 train ==")
    t = run_train(genotype=os.path.join(out, "search", "genotype.json"),
                  out=os.path.join(out, "train"), overwrite=True)
    click.echo("== 3/3 export ==")
    e = run_export(t["model"], "onnx", export_to, verify=True)
    total = time.perf_counter() - t0
    click.echo(f"quickstart done in {_fmt_time(total)} (search {_fmt_time(s.get('total_s', 0))}, "
               f"train {_fmt_time(t['total_s'])}, export {_fmt_time(e['total_s'])}): "
               f"test accuracy {100 * t['test_accuracy']:.2f}%; genotype "
               f"{_rel(os.path.join(out, 'search', 'genotype.json'))}, model {_rel(t['model'])}, "
               f"ONNX {_rel(e['path'])}")


if __name__ == "__main__":  # pragma: no cover
    main()
