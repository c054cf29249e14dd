"""The ``kdarts`` command line: search, train, show, export, generate, quickstart.

Each command parses its options, calls :mod:`kdarts.runs` (which checks every
input and output it can before any TensorFlow work) and prints what it did.
Errors are one line (``Error: ...``) and a non-zero exit status; Ctrl-C says
what was kept and how to continue (exit status 130), and so does SIGTERM
(143). TensorFlow is imported only by the commands that need it, so ``--help``
and ``--version`` answer at once.

    kdarts quickstart                         # search → train → export on the digits
    kdarts search --out runs/search           # architecture search (DARTS-PRIME defaults)
    kdarts search --out runs/search --resume  # continue an interrupted search
    kdarts train --genotype runs/search/genotype.json --out runs/train
    kdarts show runs/search/genotype.json --png cell.png
    kdarts export runs/train/model.keras --format onnx
    kdarts export runs/train/model.keras --format tflite --quantize int8 --data kdarts_digits

A corpus as --dataset (the built-in kdarts_text, or a folder holding train.txt,
valid.txt and test.txt) selects the recurrent space: a recurrent cell search and a
word-level language model (DARTS's PTB experiments):

    kdarts search --dataset kdarts_text --out runs/lm-search
    kdarts train --genotype runs/lm-search/genotype.json --out runs/lm-train
    kdarts export runs/lm-train/model.keras --format onnx
    kdarts generate runs/lm-train/model.keras --prompt "the list" --length 20
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable

import click
from click.core import ParameterSource

from kdarts.budget import RECURRENT_BUDGET_REFUSAL, describe_cost
from kdarts.data.catalog import DATASETS, DEFAULT_DATASET
from kdarts.image.export import FORMATS, INPUT_DTYPES, QUANTIZATIONS
from kdarts.options import ACTIVATIONS, ADMM_VARIANTS, ARCH_EPSILONS, RECURRENT_SCHEDULES, \
    REGULARIZERS, SKIP_PRUNED_MODES, SPLITS
from kdarts.runs import (
    DATASET_DEFAULTS,
    EXPORT_DIR,
    InterruptNote,
    RunError,
    RunInterrupted,
    SigintWatchdog,
    check_writable,
    describe_export_run,
    export_run,
    generate_run,
    kdarts_version,
    quickstart_run,
    rel,
)
from kdarts.runs.defaults import BUDGET_OPTIONS, LATENCY_RUNTIMES
from kdarts.runs.recurrent import EMBEDDED_CORPUS, PTB_SEARCH, PTB_TRAIN
from kdarts.runs.watchdog import TERMINATED, SigtermAsInterrupt
from kdarts.runtime import STRATEGIES
from kdarts.spaces import IMAGE, IMAGE_SPACE, RECURRENT_SPACE, Space, SpaceError, space_for

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
    main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (kill, a scheduler, a container stop) takes Ctrl-C's path: the run stops,
    # says what was kept, and releases its folder's lock
    terminate = SigtermAsInterrupt() if main_thread else None
    watchdog = SigintWatchdog(INTERRUPT_GRACE_S, note) if main_thread else None
    try:
        return work(note)
    except (RunError, SpaceError) as err:
        raise click.ClickException(" ".join(str(err).split())) from None
    except KeyboardInterrupt as err:
        message = (str(err) if isinstance(err, RunInterrupted)
                   else f"interrupted; {note.text}")
        if terminate is not None and terminate.received:
            _exit_interrupted(TERMINATED + message.removeprefix("interrupted"), 143)
        _exit_interrupted(message)
    finally:
        if watchdog is not None:
            watchdog.stop()
        if terminate is not None:
            terminate.restore()


def _exit_interrupted(message: str, status: int = 130) -> None:
    click.echo(f"\nError: {' '.join(message.split())}", err=True)
    sys.exit(status)


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


_CORPUS = RECURRENT_SPACE.data
_DATA_OPTIONS = [
    click.option("--dataset", default=DEFAULT_DATASET,
                 help=f"A TFDS name ({', '.join(DATASETS)}; only the default needs no download),"
                      " a folder <class>/<image> (or train/ and test/ of them), an .npz with "
                      f"x, y [x_test, y_test]; or {_CORPUS}: the recurrent space "
                      "(a language model)."),
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


def _recurrent_options(command: str):
    """The options only the recurrent space takes (a corpus as --dataset)."""
    r = RECURRENT_SPACE.defaults_for(command)
    ptb = PTB_SEARCH if command == "search" else PTB_TRAIN
    weights_lr = [click.option(
        "--lr", type=click.FloatRange(min=0.0, min_open=True), default=None,
        show_default=f"{r['lr']:g}",
        help="A corpus: the weights' SGD learning rate (gradients clipped to norm 0.25) "
             f"[a corpus folder: by its size, up to the paper's {PTB_SEARCH['lr']:g}].")]
    patience = [] if command == "search" else [click.option(
        "--patience", type=click.IntRange(min=1), default=None, show_default=f"{r['patience']}",
        help="A corpus: stop after this many epochs without a better validation loss (the "
             "paper's early stop; a PTB-sized folder runs up to --epochs 50, not the "
             "paper's 1200, a cap a CPU can reach).")]
    return [
        *(weights_lr if command == "search" else patience),
        click.option("--units", type=click.IntRange(min=1), default=None,
                     show_default=f"{r['units']}; a corpus folder: by its size, up to "
                                  f"{ptb['units']}",
                     help="A corpus: the recurrent cell's hidden (and embedding) size."),
        click.option("--bptt", type=click.IntRange(min=2), default=None,
                     show_default=f"{r['bptt']}; a corpus folder: by its size, up to {ptb['bptt']}",
                     help="A corpus: the mean length of a training segment (truncated "
                          "backpropagation through time)."),
        click.option("--vocab-size", type=click.IntRange(min=3), default=None,
                     show_default=f"{r['vocab_size']}; a corpus folder: all its words",
                     help="A corpus: keep its N most frequent training words (with <unk> and "
                          "<eos>), the others become <unk>."),
        click.option("--max-tokens", type=click.IntRange(min=1), default=None,
                     help="A corpus: use only the first N tokens of each split (quick tries)."),
    ]


#: The options of a run folder rather than of its run: both spaces take them.
_RUN_OPTIONS = ("resume", "overwrite", "stop_after_epoch")
#: How a recurrent search runs (not recorded in run.json): passed on as given.
_RECURRENT_SCALE = ("strategy",)
#: The options only the recurrent space takes (the image search has no --lr).
_RECURRENT_ONLY = {"search": ("lr", "units", "bptt", "vocab_size", "max_tokens"),
                   "train": ("units", "bptt", "vocab_size", "max_tokens", "patience")}


def _given(ctx: click.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (rather than leaving its default)."""
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE,
                                              ParameterSource.ENVIRONMENT)


def _option_label(ctx: click.Context, name: str) -> str:
    for param in ctx.command.params:
        if param.name == name:
            return "/".join(param.opts + param.secondary_opts)
    return f"--{name.replace('_', '-')}"  # pragma: no cover - every name is an option


def _refuse_given(ctx: click.Context, names, why: str) -> None:
    """RunError naming every option of ``names`` the user gave, and ``why``."""
    given = [p.name for p in ctx.command.params if p.name in names and _given(ctx, p.name)]
    if given:
        labels = ", ".join(_option_label(ctx, name) for name in given)
        raise RunError(f"{labels} appl{'ies' if len(given) == 1 else 'y'} {why}")


def _space_options(ctx: click.Context, command: str, options: dict, space: Space) -> dict:
    """The options of ``space``'s run, checked: those of the other space that the user
    gave are refused. A recurrent run gets only the options given (None for the rest),
    so its own defaults apply, not the image ones this command shows."""
    if space is IMAGE_SPACE:
        only = _RECURRENT_ONLY[command]
        _refuse_given(ctx, only, f"to {_CORPUS} as --dataset, not to the image data "
                                 f"{options['dataset']}")
        return {k: v for k, v in options.items() if k not in only}
    table = space.defaults_for(command)
    passed = _RUN_OPTIONS + (_RECURRENT_SCALE if command == "search" else ())
    image_only = [k for k in options if k not in table and k not in passed]
    data = options["dataset"] if space.takes_dataset(options["dataset"]) else EMBEDDED_CORPUS
    _refuse_given(ctx, image_only, f"to image data, not to the corpus {data} (the recurrent "
                                   "space)")
    return {k: (v if k in passed or _given(ctx, k) else None)
            for k, v in options.items() if k in table or k in passed}


def _by_dataset(command: str, key: str) -> dict:
    """An option whose default depends on --dataset: None here, resolved by kdarts.runs."""
    base = IMAGE_SPACE.defaults_for(command)[key]
    paper = {v[command][key] for v in DATASET_DEFAULTS.values() if key in v[command]}
    names = "/".join(n for n, v in DATASET_DEFAULTS.items() if key in v[command])
    shown = f"{base}" + (f"; {names}: {paper.pop()}" if paper else "")
    return dict(default=None, show_default=shown)


def _sized(command: str) -> dict:
    """The network's and the run's size options of ``command``, by name: each space's
    default in its help (the image one by --dataset, a corpus's by its size)."""
    r, ptb = RECURRENT_SPACE.defaults_for(command), PTB_SEARCH if command == "search" else PTB_TRAIN
    what = "search network" if command == "search" else "network"
    return {
        "epochs": click.option(
            "--epochs", type=click.IntRange(min=1), **_by_dataset(command, "epochs"),
            help=f"{'Search' if command == 'search' else 'Training'} epochs [a corpus: "
                 f"{r['epochs']}; a corpus folder: by its size, up to {ptb['epochs']}]."),
        "batch_size": click.option(
            "--batch-size", type=click.IntRange(min=1), **_by_dataset(command, "batch_size"),
            help=f"Batch size [a corpus: {r['batch_size']}; a corpus folder: by its size, up "
                 f"to {ptb['batch_size']}]"),
        "channels": click.option(
            "--channels", type=click.IntRange(min=1), **_by_dataset(command, "channels"),
            help=f"C of the {what}."),
        "layers": click.option(
            "--layers", type=click.IntRange(min=3 if command == "search" else 1),
            **_by_dataset(command, "layers"),
            help="Cells of the search network." if command == "search" else "Cells."),
    }


# ----------------------------------------------------------------------------- search

_d = IMAGE_SPACE.defaults_for("search")
_rd = RECURRENT_SPACE.defaults_for("search")


@main.command()
@_options([
    _sized("search")["epochs"],
    click.option("--activation", type=click.Choice(ACTIVATIONS), default=_d["activation"],
                 help="α activation: crb (clip to [0,1], prune at 0) or softmax (DARTS)."),
    click.option("--schedule", type=click.Choice(RECURRENT_SCHEDULES), default=_d["schedule"],
                 help="When to take α steps: dynamic (FI-informed) or fixed (every k steps); "
                      "a corpus also takes dynamic-latched, the authors' recurrent code as it "
                      "runs (after an epoch's first α step, every step of it takes one; "
                      "docs/fidelity.md)."),
    click.option("--every", type=click.IntRange(min=1), default=_d["every"],
                 help="k: on average one α step per k weight steps."),
    click.option("--arch-lr", type=click.FloatRange(min=0.0, min_open=True),
                 **_by_dataset("search", "arch_lr"),
                 help=f"α's Adam learning rate [a corpus: {_rd['arch_lr']}; a corpus folder: "
                      f"by its size, down to {PTB_SEARCH['arch_lr']}]."),
    click.option("--threshold", type=click.FloatRange(min=0.0, min_open=True),
                 **_by_dataset("search", "threshold"),
                 help=f"The dynamic schedule's initial FI threshold [a corpus: "
                      f"{_rd['threshold']:g}; a corpus folder: by its size, down to "
                      f"{PTB_SEARCH['threshold']:g}]."),
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
    _sized("search")["batch_size"],
    _sized("search")["channels"],
    _sized("search")["layers"],
    click.option("--steps", type=click.IntRange(min=1), default=_d["steps"],
                 help="Intermediate nodes per cell (all concatenated)."),
    click.option("--primitives", default=None,
                 help="Comma-separated candidate ops [default: all; without 'none' for crb]."),
    click.option("--max-examples", type=click.IntRange(min=1), default=None,
                 help="Use only the first N training examples (quick tries)."),
    click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=_d["seed"],
                 help="Seed of the data order, augmentation and initialisation."),
    *_recurrent_options("search"),
    click.option("--unrolled", is_flag=True, default=_d["unrolled"],
                 help="DARTS's second-order α gradient (slower)."),
    click.option("--arch-epsilon", type=click.Choice(ARCH_EPSILONS),
                 default=_d["arch_epsilon"], show_default=True,
                 help="Where α's Adam adds ε: keras (before the bias correction) or torch "
                      "(after it, as the authors' PyTorch code; docs/fidelity.md)."),
    click.option("--skip-pruned-ops", type=click.Choice(SKIP_PRUNED_MODES),
                 default=_d["skip_pruned_ops"], show_default=True,
                 help="crb: how the step leaves pruned ops out. levels: each conv op runs "
                      "only on the edges that keep it, the step traced again when 25, 50 "
                      "and 75 % of the ops are pruned; never: every op on every edge (one "
                      "trace); every_step: the edges gathered at every step (one trace, "
                      "a larger graph); auto: levels from 16x16 px at 8 channels when the "
                      "search is long enough to earn its retraces back (about 1,500 "
                      "steps there, fewer for larger images), else never."),
    click.option("--max-params", default=None, metavar="N",
                 help="Budget: the found network's parameters (evaluation network, "
                      "auxiliary head excluded) at most N, e.g. 120k. Held by the "
                      "projection itself (docs/method.md §8); one budget per search."),
    click.option("--max-madds", default=None, metavar="N",
                 help="Budget: multiply-adds of one image's inference at most N, e.g. 15M."),
    click.option("--max-latency-ms", default=None, metavar="MS",
                 help="Budget: predicted latency (batch 1, one thread, this machine) in "
                      "--latency-runtime at most MS, from per-op timings measured once "
                      "and cached."),
    click.option("--latency-runtime", type=click.Choice(LATENCY_RUNTIMES),
                 default=_d["latency_runtime"], show_default=True,
                 help="The runtime --max-latency-ms is measured in."),
    click.option("--budget-dual-lr", type=click.FloatRange(min=0.0, min_open=True),
                 default=None, metavar="F",
                 help="With a budget: add the expected-cost term λ·(E(α) − B)/B to the α "
                      "loss, λ ≥ 0 moved after every α step by λ ← max(0, λ + F·(E(α) − "
                      "B)/B) (docs/method.md §8) [default: off; see docs/budget.md]."),
    click.option("--eval-channels", type=click.IntRange(min=1), default=None,
                 help="C of the evaluation network the budget and the reported cost price "
                      "[default: kdarts train's for the dataset]."),
    click.option("--eval-layers", type=click.IntRange(min=1), default=None,
                 help="Cells of that evaluation network [default: kdarts train's]."),
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

    A corpus as --dataset (kdarts_text, or a folder holding train.txt, valid.txt and
    test.txt) searches DARTS's recurrent cell instead (the weights learn on the
    training text, α on the validation text): run.json, history.csv, the checkpoint,
    genotype.json and genotype.png. Its defaults are the bracketed ones; the image
    options (--channels, --layers, ...) do not apply to it.
    """
    ctx = click.get_current_context()

    def work(note):
        space = space_for(dataset=options["dataset"])
        budgets = [k for k in BUDGET_OPTIONS if options.get(k) is not None]
        if space is not IMAGE_SPACE and budgets:
            raise RunError(f"--{budgets[0].replace('_', '-')}: {RECURRENT_BUDGET_REFUSAL}")
        if space is IMAGE_SPACE and options["schedule"] == "dynamic-latched":
            raise RunError("--schedule dynamic-latched applies to a corpus as --dataset (the "
                           "authors' recurrent search), not to the image data "
                           f"{options['dataset']}")
        opts = _space_options(ctx, "search", options, space)
        return space.job("search")(out, report=click.echo, before_tensorflow=_set_threads,
                                   note=note, **opts)

    _run(work)


# ------------------------------------------------------------------------------ train

_t = IMAGE_SPACE.defaults_for("train")
_rt = RECURRENT_SPACE.defaults_for("train")


@main.command()
@_options([
    click.option("--genotype", required=True,
                 help="A genotype JSON file, a search folder holding one, or a preset "
                      "(DARTS_V1, DARTS_V2). A recurrent genotype (a search on a corpus) "
                      "trains a language model (on kdarts_text unless --dataset names "
                      "another corpus)."),
    _sized("train")["epochs"],
    _sized("train")["channels"],
    _sized("train")["layers"],
    _sized("train")["batch_size"],
    click.option("--cutout", type=click.IntRange(min=0), **_by_dataset("train", "cutout"),
                 help="Cutout square side in pixels, 0 for none."),
    click.option("--auxiliary/--no-auxiliary", default=_t["auxiliary"],
                 help="Auxiliary head (loss weight 0.4) during training."),
    click.option("--imagenet-stem", is_flag=True, default=_t["imagenet_stem"],
                 help="DARTS's ImageNet network: 3 stride-2 stem convs (images >= 32x32)."),
    click.option("--drop-path", type=float, **_by_dataset("train", "drop_path"),
                 help="Final drop-path probability of the linear ramp."),
    click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=_t["lr"],
                 help=f"Initial learning rate (cosine to 0) [a corpus: {_rt['lr']:g}, SGD "
                      "then ASGD, DARTS's recipe]."),
    click.option("--max-examples", type=click.IntRange(min=1), default=None,
                 help="Use only the first N training examples (quick tries)."),
    click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=_t["seed"]),
    *_recurrent_options("train"),
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

    A recurrent genotype, or a corpus as --dataset, trains a word-level language model
    (DARTS's recipe: SGD, then ASGD): run.json, history.csv and checkpoint/ (every
    epoch), then model.keras (the best validation epoch) with its vocabulary beside it
    (model.keras.vocab.json) and metrics.json (valid and test perplexity).
    """
    ctx = click.get_current_context()

    def work(note):
        space = _train_space(ctx, genotype, options["dataset"])
        opts = _space_options(ctx, "train", options, space)
        return space.job("train")(genotype, out, report=click.echo,
                                  before_tensorflow=_set_threads, note=note, **opts)

    _run(work)


def _train_space(ctx: click.Context, genotype: str, dataset: str) -> Space:
    """The space a training runs in: its genotype's (a recurrent genotype trains on
    kdarts_text unless --dataset names another corpus), else its dataset's. A genotype
    and a --dataset of different spaces are refused."""
    data_space = space_for(dataset=dataset)
    recurrent_genotype = space_for(genotype=genotype, default=IMAGE) is RECURRENT_SPACE
    if recurrent_genotype and data_space is IMAGE_SPACE and _given(ctx, "dataset"):
        raise RunError(f"--genotype {genotype} is a recurrent cell: it trains a language "
                       f"model on {_CORPUS}, not on the image data {dataset}")
    if data_space is RECURRENT_SPACE and not recurrent_genotype and os.path.exists(genotype):
        try:
            IMAGE_SPACE.load_genotype(genotype)
        except RunError:
            pass  # neither kind: the recurrent loader says what is wrong
        else:
            raise RunError(f"--genotype {genotype} is an image network's genotype "
                           f"(normal and reduction cells); the corpus {dataset} trains a "
                           "recurrent genotype's language model (a search on a corpus "
                           "writes one; presets DARTS_V1, DARTS_V2)")
    return RECURRENT_SPACE if recurrent_genotype else data_space


# ------------------------------------------------------------------------------- show


@main.command()
@click.argument("genotype")
@click.option("--png", type=click.Path(dir_okay=False), default=None,
              help="Also draw both cells to this PNG file (*.png).")
def show(genotype, png):
    """Print a genotype's cells (a JSON file, a search folder, or a preset name).

    Inputs are numbered 0 (the cell before the previous one) and 1 (the previous
    cell), intermediate nodes 2, 3, ...: the numbers genotype.json uses. A recurrent
    genotype (a search on a corpus) has one cell: state 0 from the input and the
    previous hidden state, states 1-8 each from one earlier state.
    """
    def work(_note):
        if png is not None:
            if not png.lower().endswith(".png"):
                raise RunError(f"--png {png}: the drawing is a PNG file, name it *.png")
            check_writable(png, "--png", folder=False)
        space = space_for(genotype=genotype, default=IMAGE)  # its loader names a problem
        geno = space.load_genotype(genotype)
        click.echo(str(geno))
        cost = describe_cost(getattr(geno, "cost", None))
        if cost:
            click.echo(cost)
        if png:
            from kdarts.plots import plot_genotype

            click.echo(f"{'cells' if space is IMAGE_SPACE else 'cell'} drawn → "
                       f"{rel(plot_genotype(geno, png))}")

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
@click.option("--form", type=click.Choice(("batch", "step")), default=None,
              help="A language model's ONNX graph: batch (tokens → log_probs) or step "
                   "(token, hidden → log_probs, new_hidden: generation) [default: batch; "
                   ".keras and SavedModel hold both].")
def export_command(model, fmt, out, overwrite, input_dtype, verify, quantize, data, form):
    """Export a trained MODEL.keras for inference (ONNX, SavedModel, .keras or LiteRT).

    The inference graph (no auxiliary head, no drop-path) takes raw NHWC `images`
    (pixel values 0-255, the training data's channels, dynamic batch) and returns
    `logits`; it normalises inside. The input contract is in the artifact's
    metadata. The artifact is written next to its destination, verified, then
    moved into place.

    A language model (a training on a corpus) exports to keras, saved_model or onnx,
    verified against Keras, with its vocabulary beside the artifact
    (<name>.vocab.json); it takes int32 word ids and returns log-probabilities.
    """
    _run(lambda _note: click.echo(describe_export_run(export_run(
        model, fmt, out, verify, input_dtype=input_dtype, quantize=quantize, data=data,
        overwrite=overwrite, before_tensorflow=_set_threads, form=form))))


# ---------------------------------------------------------------------------- generate


@main.command()
@click.argument("model", type=click.Path())
@click.option("--prompt", required=True,
              help="The words to start from (lowercased; unknown words read as <unk>, "
                   "a prompt of only unknown words is refused).")
@click.option("--length", type=click.IntRange(min=1), default=20, help="Words to sample.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=1.0,
              help="Divides the log-probabilities before sampling; 0 takes the most likely "
                   "word.")
@click.option("--seed", type=click.IntRange(min=0, max=2**32 - 1), default=0,
              help="The sampler's seed: the same seed gives the same words.")
def generate(model, prompt, length, temperature, seed):
    """Sample words from a trained language model (MODEL.keras, or its training folder).

    Prints the --length words that follow --prompt, on one line.
    """
    _run(lambda _note: click.echo(generate_run(
        model, prompt, length, temperature=temperature, seed=seed,
        before_tensorflow=_set_threads, report=lambda line: click.echo(line, err=True))))


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
    interrupted one resumes. Takes minutes on a laptop CPU.
    """
    _run(lambda note: quickstart_run(out, export_to, report=click.echo, overwrite=overwrite,
                                     before_tensorflow=_set_threads, note=note))


if __name__ == "__main__":  # pragma: no cover
    main()
