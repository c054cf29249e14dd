"""A run's options: the defaults, the dataset's paper-sized ones, the arguments older
run folders lack, and the checks every option gets before any TensorFlow work."""

from __future__ import annotations

import os

from kdarts.data.catalog import DATASETS, DEFAULT_DATASET, DatasetError, fit_batch_size, \
    search_split_size
from kdarts.data.files import check_dataset, parse_image_size, served_size, train_size
from kdarts.geometry import IMAGENET_MIN_SIZE
from kdarts.image.genotype import PRIMITIVES
from kdarts.runs.report import rel
from kdarts.runs.results import RunError

#: α's Adam learning rate and the dynamic schedule's initial threshold for small searches.
SMALL_ARCH_LR, SMALL_THRESHOLD = 0.05, 50.0

#: Search defaults: the paper's method (crb, dynamic schedule k=10 with the dynamic
#: split, proximity ρ=0.1) at a size for the 8x8 digits on a laptop CPU.
#: Such a search has ~35 α steps where the paper's has ~3,500, so α's learning rate is
#: scaled up to let α move as far (about 1; with 3e-4 it moves ~0.01 and crb prunes
#: nothing), and the dynamic schedule starts at a threshold in the range of the digits'
#: FI (10–150) instead of 1.0, so α steps begin at once (docs/fidelity.md, "Small
#: searches move α faster").
SEARCH_DEFAULTS: dict = dict(
    dataset=DEFAULT_DATASET, epochs=8, activation="crb", schedule="dynamic", every=10,
    arch_lr=SMALL_ARCH_LR, threshold=SMALL_THRESHOLD,
    reg="proximity", rho=0.1, admm_every=10, admm_variant="spec", split="dynamic",
    batch_size=32, channels=8,
    layers=5, steps=4, primitives=None, max_examples=None, seed=0, unrolled=False,
    image_size=None, mixed_precision=False, skip_pruned_ops="auto", arch_epsilon="keras",
    max_params=None, max_madds=None, max_latency_ms=None, latency_runtime="litert",
    eval_channels=None, eval_layers=None, budget_dual_lr=None,
)
#: The search's budget options (at most one is given), by the cost they bound.
BUDGET_OPTIONS: dict[str, str] = {"max_params": "params", "max_madds": "madds",
                                  "max_latency_ms": "latency_ms"}
#: The runtimes a latency budget can be measured in.
LATENCY_RUNTIMES: tuple[str, ...] = ("litert", "onnx")
#: Evaluation training defaults for the digits (DARTS's recipe, smaller and shorter).
TRAIN_DEFAULTS: dict = dict(
    dataset=DEFAULT_DATASET, epochs=20, channels=16, layers=8, batch_size=64, cutout=0,
    auxiliary=True, drop_path=0.1, lr=0.025, seed=0, max_examples=None, image_size=None,
    imagenet_stem=False, mixed_precision=False,
)
#: The paper's settings, the defaults for the datasets of the paper's size (explicit
#: options still win): DARTS-PRIME's search and DARTS's evaluation training on CIFAR.
PAPER_SEARCH: dict = dict(channels=16, layers=8, batch_size=64, epochs=50, arch_lr=3e-4,
                          threshold=1.0)
PAPER_TRAIN: dict = dict(channels=36, layers=20, batch_size=96, epochs=600, cutout=16,
                         drop_path=0.2)
DATASET_DEFAULTS: dict[str, dict[str, dict]] = {
    name: {"search": PAPER_SEARCH, "train": PAPER_TRAIN} for name in ("cifar10", "cifar100")}

#: Arguments an older run folder's run.json may lack, with the value such runs had.
LATER_ARGS: dict[str, dict] = {
    "search": {"image_size": None, "arch_lr": 3e-4, "threshold": 1.0,
               "mixed_precision": False, "skip_pruned_ops": "never"},
    "train": {"image_size": None, "imagenet_stem": False, "mixed_precision": False},
}

#: Arguments an older recurrent search's run.json may lack, with the value such runs had.
RECURRENT_LATER_ARGS: dict[str, dict] = {
    "search": {"mixed_precision": False, "skip_pruned_ops": "never"},
    "train": {"patience": 20}}

#: Options added since run.json's version 2, with the value every run before them had: a
#: run.json without one is compared (on resume) as if it had that value.
LATER_OPTIONS: dict = {"arch_epsilon": "keras", "max_params": None, "max_madds": None,
                       "max_latency_ms": None, "latency_runtime": "litert",
                       "eval_channels": None, "eval_layers": None, "budget_dual_lr": None}


def with_later_options(old: dict, args: dict) -> dict:
    """A run.json's arguments ``old`` with the :data:`LATER_OPTIONS` that today's ``args``
    have and ``old`` lacks, at the value runs before them had."""
    return {**{k: v for k, v in LATER_OPTIONS.items() if k in args and k not in old}, **old}


#: run.json values an option has in an older form, and the value each reads as (an older
#: ``--skip-pruned-ops`` is a boolean: True, the per-step gathers; False, every op everywhere)
OLD_VALUES: dict[str, dict] = {"skip_pruned_ops": {True: "every_step", False: "never"}}


def upgrade_args(args: dict) -> dict:
    """``args`` (a run.json's) with values of an older form in today's (:data:`OLD_VALUES`)."""
    return {k: OLD_VALUES[k].get(v, v) if k in OLD_VALUES and isinstance(v, bool) else v
            for k, v in args.items()}


def resolve_options(command: str, options: dict) -> dict:
    """Every option of a ``search``/``train`` run: those given (not None), else the
    dataset's defaults (:data:`DATASET_DEFAULTS`), else the digits-sized ones.

    Example:
        >>> resolve_options("train", {"dataset": "cifar10", "epochs": 5})["channels"]
        36
    """
    base = {"search": SEARCH_DEFAULTS, "train": TRAIN_DEFAULTS}[command]
    unknown = set(options) - set(base)
    if unknown:
        raise TypeError(f"{command}_run: unknown option(s) {', '.join(sorted(unknown))}")
    given = {k: v for k, v in options.items() if v is not None}
    dataset = given.get("dataset", base["dataset"])
    return {**base, **DATASET_DEFAULTS.get(dataset, {}).get(command, {}), **given}


def parse_primitives(value: str | list | tuple | None, activation: str) -> tuple[str, ...] | None:
    """Candidate ops from ``"a,b,c"`` (or a list); None means all."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "all")):
        return None
    names = tuple(p.strip() for p in (value.split(",") if isinstance(value, str) else value)
                  if p.strip())
    unknown = [p for p in names if p not in PRIMITIVES]
    if unknown:
        raise RunError(f"--primitives: unknown op(s) {', '.join(unknown)}; valid: "
                       f"{', '.join(PRIMITIVES)}")
    if len(set(names)) != len(names):
        raise RunError(f"--primitives: {value!r} lists an op twice")
    if activation == "crb" and "none" in names:
        raise RunError("--primitives: 'none' is not a candidate with --activation crb "
                       "(an op is pruned instead)")
    if not [p for p in names if p != "none"]:
        raise RunError("--primitives: need at least one op other than 'none'")
    return names


def check_budget_options(opts: dict) -> None:
    """The budget options, checked without TensorFlow: at most one bound, each a positive
    amount (``"120k"``, ``"15M"``, ``0.8``; stored as a number), a known runtime, and the
    expected-cost term's rate (positive, and only with a bound)."""
    from kdarts.budget import BudgetError, parse_amount

    given = [k for k in BUDGET_OPTIONS if opts.get(k) is not None]
    if len(given) > 1:
        raise RunError(f"--{given[0].replace('_', '-')} and --{given[1].replace('_', '-')}: "
                       "give one budget (the projection holds one cost)")
    for key in given:
        try:
            opts[key] = parse_amount(opts[key], f"--{key.replace('_', '-')}")
        except BudgetError as err:
            raise RunError(str(err)) from None
    rate = opts.get("budget_dual_lr")
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise RunError(f"--budget-dual-lr: expected a positive number, got {rate!r}")
        if not given:
            raise RunError("--budget-dual-lr: the expected-cost term pulls towards a budget; "
                           "give one (--max-params, --max-madds or --max-latency-ms)")
        opts["budget_dual_lr"] = float(rate)
    if opts.get("latency_runtime") not in LATENCY_RUNTIMES:
        raise RunError(f"--latency-runtime: expected one of {', '.join(LATENCY_RUNTIMES)}, "
                       f"got {opts.get('latency_runtime')!r}")
    for key in ("eval_channels", "eval_layers"):
        value = opts.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise RunError(f"--{key.replace('_', '-')}: expected a positive integer, got "
                           f"{value!r}")


def eval_network_size(opts: dict) -> tuple[int, int]:
    """``(channels, layers)`` of the evaluation network a search's budget and cost price:
    ``eval_channels``/``eval_layers`` if given, else ``kdarts train``'s for the dataset."""
    train = resolve_options("train", {"dataset": opts["dataset"]})
    return (int(opts.get("eval_channels") or train["channels"]),
            int(opts.get("eval_layers") or train["layers"]))


def check_data_options(opts: dict) -> None:
    """Checks ``--dataset``/``--image-size`` (no TensorFlow) and makes them canonical.

    A path becomes absolute, so ``run.json`` names the data wherever the run is
    resumed from; the image size becomes ``[H, W]`` (JSON).
    """
    try:
        size = parse_image_size(opts["image_size"])
        opts["dataset"] = check_dataset(opts["dataset"], size)
    except DatasetError as err:
        raise RunError(" ".join(str(err).split())) from None
    opts["image_size"] = None if size is None else list(size)


def check_imagenet_size(opts: dict) -> None:
    """``--imagenet-stem`` halves the images five times: refuse smaller ones at once."""
    if opts["channels"] < 2:
        raise RunError(f"--imagenet-stem needs --channels 2 or more (its first stem conv has "
                       f"C/2 channels), got {opts['channels']}")
    size = served_size(opts["dataset"], opts["image_size"])
    if min(size) < IMAGENET_MIN_SIZE:
        folder = os.path.isdir(opts["dataset"])
        data = rel(opts["dataset"]) if os.path.isabs(opts["dataset"]) else opts["dataset"]
        raise RunError(f"--imagenet-stem needs images of at least {IMAGENET_MIN_SIZE}x"
                       f"{IMAGENET_MIN_SIZE} (three stride-2 stem convs, then two reductions); "
                       f"the images of {data} are {size[0]}x{size[1]}"
                       + (f" (--image-size {IMAGENET_MIN_SIZE} enlarges them)" if folder else ""))


def fit_search_batch(opts: dict, explicit: bool) -> str | None:
    """Own data (a folder or an ``.npz``): a default batch larger than the search split is
    lowered to the largest power of two the split holds, and the line saying so returned;
    an explicit ``--batch-size`` that does not fit is refused. Counted without TensorFlow.

    The lowered batch goes into ``opts``, hence into run.json's args: the same command
    chooses it again, so ``--resume`` finds the same arguments.
    """
    if opts["dataset"] in DATASETS:  # a TFDS name: its pipelines check the batch
        return None
    num_train = train_size(opts["dataset"], opts["image_size"])
    if opts["max_examples"]:
        num_train = min(num_train, opts["max_examples"])
    num_search = search_split_size(num_train, opts["split"], opts["every"])
    batch = opts["batch_size"]
    data = rel(opts["dataset"])
    share = (f"1/{1 + opts['every']}" if opts["split"] == "dynamic" else "half")
    if num_search < 1:
        raise RunError(f"the search split of {data} would hold no image ({share} of "
                       f"{num_train} training images); add images"
                       + (" or pass --split half" if opts["split"] == "dynamic" else ""))
    if batch <= num_search:
        return None
    if explicit:
        raise RunError(f"--batch-size {batch}: the search split of {data} has {num_search} "
                       f"images ({share} of {num_train} training images), fewer than a "
                       f"batch; pass --batch-size {num_search} or less, or add images")
    opts["batch_size"] = fit_batch_size(batch, num_search)
    return (f"batch size {opts['batch_size']}: the search split of {data} has {num_search} "
            f"images ({share} of {num_train}), fewer than the default {batch}; "
            "--batch-size sets another")


def tensorboard_available() -> None:
    """RunError unless the tensorboard package is installed (checked before any work)."""
    from importlib.util import find_spec

    if find_spec("tensorboard") is None:
        raise RunError("--tensorboard needs the tensorboard package: pip install tensorboard "
                       "(or pip install kdarts[tensorboard])")
