"""The search ``kdarts search`` runs, as the parts of a Keras ``compile``/``fit``.

:func:`kdarts.runs.search.search_defaults` resolves a search's options exactly as the
command line does (the dataset's defaults, the same checks, a default batch lowered to fit
small own data) and returns a :class:`SearchDefaults`, which builds the datasets, the
:class:`~kdarts.image.SearchNetwork` arguments and the ``compile`` arguments with the
functions :class:`kdarts.runs.search.SearchFit` builds its own with. Seeded alike, a
``fit`` with them is the command's search: the same α, the same genotype.

Example:
    >>> import kdarts
    >>> search = kdarts.search_defaults("kdarts_digits", seed=0)
    >>> search["arch_lr"], search["threshold"], search.epochs
    (0.05, 50.0, 8)
    >>> weight_ds, search_ds, info, steps = search.datasets()          # doctest: +SKIP
    >>> import keras                                                    # doctest: +SKIP
    >>> keras.utils.set_random_seed(search.seed)                        # doctest: +SKIP
    >>> model = kdarts.SearchNetwork(**search.network_args(info))       # doctest: +SKIP
    >>> model.build((None, *info.image_shape))                          # doctest: +SKIP
    >>> model.compile(**search.compile_args(search_ds))                 # doctest: +SKIP
    >>> model.fit(weight_ds, epochs=search.epochs, steps_per_epoch=steps)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping


def search_data(opts: Mapping[str, Any], *, data_dir: str | None = None,
                download: bool = False) -> tuple:
    """``(weight_ds, search_ds, info, steps_per_epoch)`` of a search's resolved options
    (:func:`kdarts.data.search_datasets` with the options' dataset, batch, seed, split,
    ``every``, ``max_examples`` and ``image_size``)."""
    from kdarts.data import search_datasets

    return search_datasets(
        opts["dataset"], batch_size=opts["batch_size"], seed=opts["seed"],
        split=opts["split"], every=opts["every"], data_dir=data_dir,
        max_examples=opts["max_examples"], download=download, image_size=opts["image_size"])


def network_args(opts: Mapping[str, Any], info, *, sync_batch_norm: bool = False) -> dict:
    """The keyword arguments of :class:`~kdarts.image.SearchNetwork` for a search's
    resolved options and its data's ``info`` (classes, mean and std): every cell
    concatenates all its ``steps`` nodes, and ``mixed_precision`` sets the dtype policy."""
    from kdarts.ops import MIXED_PRECISION

    primitives = opts["primitives"]
    return dict(num_classes=info.num_classes, channels=opts["channels"],
                layers=opts["layers"], steps=opts["steps"], multiplier=opts["steps"],
                activation=opts["activation"],
                primitives=None if primitives is None else tuple(primitives),
                mean=info.mean, std=info.std, sync_batch_norm=sync_batch_norm,
                dtype=MIXED_PRECISION if opts["mixed_precision"] else None)


def _cost_geometry(opts: Mapping[str, Any], info) -> dict:
    """The evaluation network a search's costs price (:func:`eval_network_size`)."""
    from kdarts.image.genotype import CRB_PRIMITIVES, PRIMITIVES
    from kdarts.runs.defaults import eval_network_size

    channels, layers = eval_network_size(dict(opts))
    primitives = opts["primitives"] or (CRB_PRIMITIVES if opts["activation"] == "crb"
                                        else PRIMITIVES)
    return dict(num_classes=info.num_classes, image_shape=tuple(info.image_shape),
                channels=channels, layers=layers, primitives=tuple(primitives),
                steps=opts["steps"])


def search_budget(opts: Mapping[str, Any], info):
    """The :class:`kdarts.image.budget.Budget` of a search's resolved options (None without one),
    priced on the evaluation network ``kdarts train`` would build for the data
    (``eval_channels``/``eval_layers``, else its defaults).

    Raises:
        RunError: the budget is below the cheapest valid genotype (the line names that
            cost), or its runtime is missing.
    """
    from kdarts.budget import BudgetError
    from kdarts.image.budget import Budget
    from kdarts.runs.defaults import BUDGET_OPTIONS
    from kdarts.runs.results import RunError

    given = [k for k in BUDGET_OPTIONS if opts.get(k) is not None]
    if not given:
        return None
    kind = BUDGET_OPTIONS[given[0]]
    geometry = _cost_geometry(opts, info)
    try:
        if kind == "latency_ms":
            from kdarts.image.latency import latency_table

            # measured once per machine, runtime and shape, then read from the cache
            table = latency_table(opts["latency_runtime"], progress=True, **geometry)
        else:
            from kdarts.image.costs import cost_tables

            table = cost_tables(**geometry)[kind]
        return Budget(table, float(opts[given[0]]))
    except (BudgetError, ImportError) as err:
        raise RunError(f"--{given[0].replace('_', '-')}: {err}") from None


def genotype_cost(opts: Mapping[str, Any], info, genotype, budget=None) -> dict:
    """What genotype.json records of a found genotype's cost: the evaluation network, its
    parameters and multiply-adds (counted exactly from built layers), and the budget with
    its cost (a latency budget's is the table's prediction)."""
    from kdarts.image.costs import cost_tables

    geometry = _cost_geometry(opts, info)
    tables = cost_tables(**geometry)
    record = {"network": {"channels": geometry["channels"], "layers": geometry["layers"],
                          "image_shape": list(geometry["image_shape"]),
                          "num_classes": geometry["num_classes"]},
              "params": int(round(tables["params"].of(genotype))),
              "madds": int(round(tables["madds"].of(genotype)))}
    if budget is not None:
        record["budget"] = budget.to_dict()
        if budget.kind == "latency_ms":
            record["latency_ms"] = float(budget.cost(genotype))
    return record


def compile_args(opts: Mapping[str, Any], search_data, budget=None) -> dict:
    """The keyword arguments of :meth:`SearchNetwork.compile
    <kdarts.image.SearchNetwork.compile>` for a search's resolved options: the
    schedule (``every``, ``threshold``), the regulariser, α's Adam at ``arch_lr``
    (betas 0.5/0.999, as the paper's; ε placed as ``arch_epsilon`` says), ``unrolled``,
    ``skip_pruned_ops``, the search split ``search_data``, and ``budget``
    (:func:`search_budget`) with its expected-cost term's ``budget_dual_lr``. The
    weight optimizer and the losses are ``compile``'s own."""
    from kdarts.options import make_arch_optimizer, make_regularizer, make_schedule

    arch_optimizer = make_arch_optimizer(opts, beta_1=0.5)
    return dict(schedule=make_schedule(opts), regularizer=make_regularizer(opts["reg"], opts),
                search_data=search_data, unrolled=opts["unrolled"],
                arch_optimizer=arch_optimizer, skip_pruned_ops=opts["skip_pruned_ops"],
                budget=budget, budget_dual_lr=opts.get("budget_dual_lr"))


@dataclasses.dataclass(frozen=True)
class SearchDefaults:
    """A search's resolved options (read-only; ``search["channels"]``) and the parts
    ``kdarts search`` builds from them. Made by :func:`kdarts.runs.search.search_defaults`.

    Attributes:
        options: every option of :data:`~kdarts.runs.SEARCH_DEFAULTS`, resolved.
        notes: lines the command would print about the options (a lowered batch).
    """

    options: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> Any:
        return self.options[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.options)

    @property
    def epochs(self) -> int:
        """Search epochs (``fit``'s ``epochs``)."""
        return int(self.options["epochs"])

    @property
    def batch_size(self) -> int:
        """The batch of both the weight and the search split."""
        return int(self.options["batch_size"])

    @property
    def seed(self) -> int:
        """The seed of the data order and augmentation; seed Keras with it
        (``keras.utils.set_random_seed``) before building the network, as the command
        does, for its initial weights and α."""
        return int(self.options["seed"])

    def datasets(self, *, data_dir: str | None = None, download: bool = False) -> tuple:
        """``(weight_ds, search_ds, info, steps_per_epoch)``: infinite streams of raw-pixel
        batches, the data's :class:`~kdarts.data.DatasetInfo`, and the weight steps of
        an epoch. ``data_dir`` and ``download`` as for :func:`kdarts.data.load_dataset`."""
        return search_data(self.options, data_dir=data_dir, download=download)

    def network_args(self, info, *, sync_batch_norm: bool = False) -> dict:
        """``SearchNetwork(**search.network_args(info))``: classes, size, activation,
        candidate ops, the data's mean and std, and the dtype policy.
        ``sync_batch_norm``: BN over the global batch under a multi-replica strategy."""
        return network_args(self.options, info, sync_batch_norm=sync_batch_norm)

    def compile_args(self, search_data, info=None) -> dict:
        """``model.compile(**search.compile_args(search_ds, info))``: the schedule,
        regulariser, α optimizer, ``unrolled``, ``skip_pruned_ops``, the search split, and
        the budget if one was given (``max_params``, ``max_madds``, ``max_latency_ms``;
        priced for the data's ``info``, which it then needs). A fresh α optimizer each
        call: compile each network with its own."""
        budget = None
        if any(self.options.get(k) is not None
               for k in ("max_params", "max_madds", "max_latency_ms")):
            if info is None:
                raise ValueError("compile_args: a budgeted search prices the evaluation "
                                 "network for the data: pass info (from datasets())")
            budget = search_budget(self.options, info)
        return compile_args(self.options, search_data, budget)

    def budget(self, info):
        """The :class:`kdarts.image.budget.Budget` the options give for the data ``info`` (None
        without one)."""
        return search_budget(self.options, info)
