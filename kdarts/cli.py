"""The ``kdarts`` command line: search, train, show, export, quickstart.

Each command parses its options, calls :mod:`kdarts.runs` (which checks every
input and output it can before any TensorFlow work) and prints what it did.
Errors are one line (``Error: ...``) and a non-zero exit status; Ctrl-C says
what was kept and how to continue (exit status 130). TensorFlow is imported only
by the commands that need it, so ``--help`` and ``--version`` answer at once.

    kdarts quickstart                         # search → train → export on the digits
    kdarts search --out runs/search           # architecture search (DARTS-PRIME defaults)
    kdarts search --out runs/search --resume  # continue an interrupted search
    kdarts train --genotype runs/search/genotype.json --out runs/train
    kdarts show runs/search/genotype.json --png cell.png
    kdarts export runs/train/model.keras --format onnx
    kdarts export runs/train/model.keras --format tflite --quantize int8 --data kdarts_digits
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable

import click

from kdarts.data.catalog import DATASETS, DEFAULT_DATASET
from kdarts.export import FORMATS, INPUT_DTYPES, QUANTIZATIONS
from kdarts.options import ACTIVATIONS, ADMM_VARIANTS, REGULARIZERS, SCHEDULES, SPLITS
from kdarts.runtime import STRATEGIES
from kdarts.runs import (
    DATASET_DEFAULTS,
    EXPORT_DIR,
    SEARCH_DEFAULTS,
    TRAIN_DEFAULTS,
    InterruptNote,
    RunError,
    RunInterrupted,
    SigintWatchdog,
    check_writable,
    describe_export,
    export_run,
    kdarts_version,
    load_genotype,
    quickstart_run,
    rel,
    search_run,
    train_run,
)

INTERRUPT_GRACE_S = 3.0  # how long Ctrl-C may wait for TensorFlow to hand control back


def _run(work: Callable[[InterruptNote], object]):
    """Run a command's work: RunError → one-line error; Ctrl-C → what was kept, exit 130.

    The work passes :func:`_set_threads` to :mod:`kdarts.runs` as ``before_tensorflow``:
    the run checks its inputs and outputs first, so a refusal does not wait seconds for
    TensorFlow to load.

    TensorFlow can hold the interpreter for a minute while it optimises a graph, and
    Python only sees Ctrl-C after that: :class:`~kdarts.runs.SigintWatchdog` then
    prints the same message and ends the process. The work passes the note it is given
    to the run, which keeps it current.
    """
    note = InterruptNote()
    watchdog = (SigintWatchdog(INTERRUPT_GRACE_S, note)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        return work(note)
    except RunError as err:
        raise click.ClickException(" ".join(str(err).split())) from None
    except KeyboardInterrupt as err:
        message = (str(err) if isinstance(err, RunInterrupted)
                   else f"interrupted; {note.text}")
        _exit_interrupted(message)
    finally:
        if watchdog is not None:
            watchdog.stop()


def _exit_interrupted(message: str) -> None:
    click.echo(f"\nError: {' '.join(message.split())}", err=True)
    sys.exit(130)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                               "max_content_width": 100})
@click.version_option(kdarts_version(), prog_name="kdarts")
@click.option("--intra-op-threads", type=click.IntRange(min=0), default=1,
              help="Threads per TensorFlow kernel (0: all cores). 1 runs the search's many "
                   "small kernels side by side, which is faster on a CPU.")
@click.option("--inter-op-threads", type=click.IntRange(min=0), default=0,
              help="TensorFlow kernels run at once (0: one per core).")
@click.option("--cpu-devices", type=click.IntRange(min=1), default=1,
              help="Split the CPU into this many logical devices (for --strategy mirrored "
                   "on a machine without GPUs).")
@click.pass_context
def main(ctx: click.Context, intra_op_threads: int, inter_op_threads: int, cpu_devices: int):
    """kdarts: differentiable architecture search (DARTS, DARTS-PRIME) for Keras 3.

    Start with `kdarts quickstart`: it searches a cell on the built-in 8x8 digits,
    trains the found network, and exports it to ONNX, in a few minutes on a CPU.
    """
    # applied by the commands that run TensorFlow (not here: `kdarts search --help`
    # passes through this function and must not wait for TensorFlow to load)
    explicit = any(ctx.get_parameter_source(p) != click.core.ParameterSource.DEFAULT
                   for p in ("intra_op_threads", "inter_op_threads"))
    ctx.obj = {"threads": (intra_op_threads, inter_op_threads, explicit),
               "cpu_devices": cpu_devices}


def _set_threads() -> None:
    from kdarts.runtime import import_tensorflow_quietly, set_cpu_threads, split_cpu

    import_tensorflow_quietly()  # its native libraries' load-time INFO lines stay off stderr

    ctx = click.get_current_context()
    settings = ctx.find_object(dict) or {}
    intra, inter, explicit = settings.get("threads", (1, 0, False))
    try:
        split_cpu(settings.get("cpu_devices", 1))
    except RuntimeError as err:
        raise click.ClickException(str(err)) from None
    try:
        set_cpu_threads(intra, inter)
    except RuntimeError as err:  # invoked inside a process that already runs TensorFlow
        if explicit:
            click.echo(f"Warning: {err}; keeping them.", err=True)


_DATA_OPTIONS = [
    click.option("--dataset", default=DEFAULT_DATASET,
                 help=f"A TFDS name ({', '.join(DATASETS)}; only the default needs no download),"
                      " a folder <class>/<image> (or train/ and test/ of them), or an .npz with "
                      "x, y [x_test, y_test]."),
    click.option("--image-size", default=None,
                 help="H,W to resize a folder's images to [default: their own size]."),
    click.option("--tensorboard", is_flag=True,
                 help="Also write TensorBoard event files to --out/tensorboard."),
    click.option("--download", is_flag=True, help="Download the dataset if needed (internet)."),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                 help="TFDS data folder [default: $TFDS_DATA_DIR or ~/tensorflow_datasets]."),
]


_MIXED_PRECISION = click.option(
    "--mixed-precision", is_flag=True, default=False,
    help="Compute in float16 (Keras mixed_float16, dynamic loss scaling); variables, α, BN "
         "statistics and the loss stay float32. Pays on GPUs; slower on most CPUs.")
_SCALE_OPTIONS = [
    click.option("--strategy", type=click.Choice(STRATEGIES), default="default",
                 help="tf.distribute: one device, mirrored (all GPUs, or --cpu-devices), or "
                      "multiworker (cluster from TF_CONFIG). --batch-size is the global batch."),
    click.option("--sync-bn/--no-sync-bn", "sync_batch_norm", default=True,
                 help="With several replicas, BN statistics of the global batch (as one "
                      "device computes them)."),
]


def _options(options):
    def decorate(func):
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def _by_dataset(command: str, key: str) -> dict:
    """An option whose default depends on --dataset: None here, resolved by kdarts.runs."""
    base = (SEARCH_DEFAULTS if command == "search" else TRAIN_DEFAULTS)[key]
    paper = {v[command][key] for v in DATASET_DEFAULTS.values() if key in v[command]}
    names = "/".join(n for n, v in DATASET_DEFAULTS.items() if key in v[command])
    shown = f"{base}" + (f"; {names}: {paper.pop()}" if paper else "")
    return dict(default=None, show_default=shown)


# ----------------------------------------------------------------------------- search

_d = SEARCH_DEFAULTS


@main.command()
@_options([
    click.option("--epochs", type=click.IntRange(min=1), **_by_dataset("search", "epochs"),
                 help="Search epochs."),
    click.option("--activation", type=click.Choice(ACTIVATIONS), default=_d["activation"],
                 help="α activation: crb (clip to [0,1], prune at 0) or softmax (DARTS)."),
    click.option("--schedule", type=click.Choice(SCHEDULES), default=_d["schedule"],
                 help="When to take α steps: dynamic (FI-informed) or fixed (every k steps)."),
    click.option("--every", type=click.IntRange(min=1), default=_d["every"],
                 help="k: on average one α step per k weight steps."),
    click.option("--arch-lr", type=click.FloatRange(min=0.0, min_open=True),
                 **_by_dataset("search", "arch_lr"), help="α's Adam learning rate."),
    click.option("--threshold", type=click.FloatRange(min=0.0, min_open=True),
                 **_by_dataset("search", "threshold"),
                 help="The dynamic schedule's initial FI threshold."),
    click.option("--reg", type=click.Choice(list(REGULARIZERS)), default=_d["reg"],
                 help="Regulariser pulling α towards its discretisation."),
    click.option("--rho", type=click.FloatRange(min=0.0), default=_d["rho"],
                 help="ρ, the regulariser's weight."),
    click.option("--admm-every", type=click.IntRange(min=1), default=_d["admm_every"],
                 help="ADMM: update Z and U every this many α steps."),
    click.option("--admm-variant", type=click.Choice(ADMM_VARIANTS),
                 default=_d["admm_variant"],
                 help="ADMM rules: spec (docs/method.md §6) or reference (the authors' code; "
                      "--admm-every 10 then updates every 9 α steps; docs/fidelity.md)."),
    click.option("--split", type=click.Choice(SPLITS), default=_d["split"],
                 help="Search split: 1/(1+k) of the training data (dynamic) or 50/50."),
    click.option("--batch-size", type=click.IntRange(min=1), **_by_dataset("search", "batch_size")),
    click.option("--channels", type=click.IntRange(min=1), **_by_dataset("search", "channels"),
                 help="C of the search network."),
    click.option("--layers", type=click.IntRange(min=3), **_by_dataset("search", "layers"),
                 help="Cells of the search network."),
    click.option("--steps", type=click.IntRange(min=1), default=_d["steps"],
                 help="Intermediate nodes per cell (all concatenated)."),
    click.option("--primitives", default=None,
                 help="Comma-separated candidate ops [default: all; without 'none' for crb]."),
    click.option("--max-examples", type=click.IntRange(min=1), default=None,
                 help="Use only the first N training examples (quick tries)."),
    click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=_d["seed"],
                 help="Seed of the data order, augmentation and initialisation."),
    click.option("--unrolled", is_flag=True, default=_d["unrolled"],
                 help="DARTS's second-order α gradient (slower)."),
    click.option("--skip-pruned-ops", is_flag=True, default=_d["skip_pruned_ops"],
                 help="crb: run each conv op only on the edges that keep it. Fewer FLOPs "
                      "once many ops are pruned (long searches at large sizes), a larger "
                      "step graph: ~13 s more before the first step."),
    click.option("--out", type=click.Path(), default=os.path.join("runs", "search"),
                 help="Output folder (new or empty, or this search's own with --resume)."),
    click.option("--resume", is_flag=True,
                 help="Continue the interrupted search in --out (same arguments)."),
    _MIXED_PRECISION,
    *_DATA_OPTIONS,
    *_SCALE_OPTIONS,
    click.option("--stop-after-epoch", type=click.IntRange(min=1), default=None, hidden=True),
])
def search(out, **options):
    """Search a cell architecture (DARTS-PRIME: crb, dynamic schedule, proximity).

    Writes to --out: run.json (the arguments, first), history.csv (per epoch),
    search_record.json (α and the schedule, for the plots), checkpoint.weights.h5 and
    checkpoint.json (every epoch; --resume continues from them), genotype.json, and
    the plots alpha.png, schedule.png and genotype.png.
    """
    _run(lambda note: search_run(out, report=click.echo, before_tensorflow=_set_threads,
                                 note=note, **options))


# ------------------------------------------------------------------------------ train

_t = TRAIN_DEFAULTS


@main.command()
@_options([
    click.option("--genotype", required=True,
                 help="A genotype JSON file, a search folder holding one, or a preset "
                      "(DARTS_V1, DARTS_V2)."),
    click.option("--epochs", type=click.IntRange(min=1), **_by_dataset("train", "epochs"),
                 help="Training epochs."),
    click.option("--channels", type=click.IntRange(min=1), **_by_dataset("train", "channels"),
                 help="C of the network."),
    click.option("--layers", type=click.IntRange(min=1), **_by_dataset("train", "layers"),
                 help="Cells."),
    click.option("--batch-size", type=click.IntRange(min=1), **_by_dataset("train", "batch_size")),
    click.option("--cutout", type=click.IntRange(min=0), **_by_dataset("train", "cutout"),
                 help="Cutout square side in pixels, 0 for none."),
    click.option("--auxiliary/--no-auxiliary", default=_t["auxiliary"],
                 help="Auxiliary head (loss weight 0.4) during training."),
    click.option("--imagenet-stem", is_flag=True, default=_t["imagenet_stem"],
                 help="DARTS's ImageNet network: 3 stride-2 stem convs (images >= 32x32)."),
    click.option("--drop-path", type=float, **_by_dataset("train", "drop_path"),
                 help="Final drop-path probability of the linear ramp."),
    click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=_t["lr"],
                 help="Initial learning rate (cosine to 0)."),
    click.option("--max-examples", type=click.IntRange(min=1), default=None,
                 help="Use only the first N training examples (quick tries)."),
    click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=_t["seed"]),
    click.option("--out", type=click.Path(), default=os.path.join("runs", "train"),
                 help="Output folder (new or empty, or this training's own with --resume)."),
    click.option("--resume", is_flag=True,
                 help="Continue the interrupted training in --out (same arguments)."),
    click.option("--overwrite", is_flag=True,
                 help="Replace a previous training in --out (its files only)."),
    _MIXED_PRECISION,
    *_DATA_OPTIONS,
    *_SCALE_OPTIONS,
    click.option("--stop-after-epoch", type=click.IntRange(min=1), default=None, hidden=True),
])
def train(genotype, out, **options):
    """Train a genotype's network from scratch and measure its test accuracy.

    Writes to --out: run.json, history.csv and a checkpoint (every epoch; --resume
    continues from it), then model.keras (the whole model, reload-verified) and
    metrics.json (test accuracy, the arguments, and what the model takes: raw
    images, pixel values 0-255, float32 or uint8).
    """
    _run(lambda note: train_run(genotype, out, report=click.echo,
                                before_tensorflow=_set_threads, note=note, **options))


# ------------------------------------------------------------------------------- show


@main.command()
@click.argument("genotype")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw both cells to this PNG file (*.png).")
def show(genotype, png):
    """Print a genotype's cells (a JSON file, a search folder, or a preset name).

    Inputs are numbered 0 (the cell before the previous one) and 1 (the previous
    cell), intermediate nodes 2, 3, ...: the numbers genotype.json uses.
    """
    def work(_note):
        if png is not None:
            if not png.lower().endswith(".png"):
                raise RunError(f"--png {png}: the drawing is a PNG file, name it *.png")
            check_writable(png, "--png", folder=False)
        geno = load_genotype(genotype)
        click.echo(str(geno))
        if png:
            from kdarts.plots import plot_genotype

            click.echo(f"cells drawn → {rel(plot_genotype(geno, png))}")

    _run(work)


# ----------------------------------------------------------------------------- export


@main.command("export")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="onnx",
              help="Artifact format: onnx (*.onnx), keras (*.keras), saved_model (a folder), "
                   "tflite (*.tflite, LiteRT).")
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default="none",
              help="tflite: float16 weights, dynamic (int8 weights) or int8 (uint8 input).")
@click.option("--data", default=None, help="tflite: the training data (as for --dataset); int8 "
              "calibrates on it, quantised models are verified on its test split.")
@click.option("--out", default=None,
              help=f"Destination [default: {EXPORT_DIR}/<name>.onnx, .keras, .tflite "
                   "(<name>_<quantize>.tflite), or a folder for saved_model; <name>: "
                   "runs/x/train/model.keras gives x-train, other archives their own name].")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out (never the model itself).")
@click.option("--input-dtype", type=click.Choice(INPUT_DTYPES), default="float32",
              help="ONNX input dtype (.keras and SavedModel take both).")
@click.option("--verify/--no-verify", default=True,
              help="Reload the artifact and compare its logits with the Keras model's.")
def export_command(model, fmt, out, overwrite, input_dtype, verify, quantize, data):
    """Export a trained MODEL.keras for inference (ONNX, SavedModel, .keras or LiteRT).

    The inference graph (no auxiliary head, no drop-path) takes raw NHWC `images`
    (pixel values 0-255, the training data's channels, dynamic batch) and returns
    `logits`; it normalises inside. The input contract is in the artifact's
    metadata. The artifact is written next to its destination, verified, then
    moved into place.
    """
    _run(lambda _note: click.echo(describe_export(export_run(
        model, fmt, out, verify, input_dtype=input_dtype, quantize=quantize, data=data,
        overwrite=overwrite, before_tensorflow=_set_threads))))


# ------------------------------------------------------------------------- quickstart


@main.command()
@click.option("--out", type=click.Path(), default=os.path.join("runs", "quickstart"),
              help="Folder for the search/ and train/ outputs.")
@click.option("--export-to", default=os.path.join(EXPORT_DIR, "quickstart.onnx"),
              help="The exported ONNX model.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --export-to that is not this quickstart's own export "
                   "(a rerun replaces its own).")
def quickstart(out, export_to, overwrite):
    """Search → train → export ONNX on the built-in digits, with the default settings.

    Run it again after an interruption: a complete phase in OUT is reused and an
    interrupted one resumes. Takes a few minutes on 2 CPU cores.
    """
    _run(lambda note: quickstart_run(out, export_to, report=click.echo, overwrite=overwrite,
                                     before_tensorflow=_set_threads, note=note))


if __name__ == "__main__":  # pragma: no cover
    main()
