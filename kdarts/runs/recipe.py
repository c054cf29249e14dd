"""The search ``kdarts search`` runs, as the parts of a Keras ``compile``/``fit``.

:func:`kdarts.runs.search.search_defaults` resolves a search's options exactly as the
command line does (the dataset's defaults, the same checks, a default batch lowered to fit
small own data) and returns a :class:`SearchDefaults`, which builds the datasets, the
:class:`~kdarts.search.SearchNetwork` arguments and the ``compile`` arguments with the
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
    """The keyword arguments of :class:`~kdarts.search.SearchNetwork` for a search's
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


def compile_args(opts: Mapping[str, Any], search_data) -> dict:
    """The keyword arguments of :meth:`SearchNetwork.compile
    <kdarts.search.SearchNetwork.compile>` for a search's resolved options: the
    schedule (``every``, ``threshold``), the regulariser, α's Adam at ``arch_lr``
    (betas 0.5/0.999, as the paper's; ε placed as ``arch_epsilon`` says), ``unrolled``, ``skip_pruned_ops`` and the search
    split ``search_data``. The weight optimizer and the losses are ``compile``'s own."""
    from kdarts.options import make_arch_optimizer, make_regularizer, make_schedule

    arch_optimizer = make_arch_optimizer(opts, beta_1=0.5)
    return dict(schedule=make_schedule(opts), regularizer=make_regularizer(opts["reg"], opts),
                search_data=search_data, unrolled=opts["unrolled"],
                arch_optimizer=arch_optimizer, skip_pruned_ops=opts["skip_pruned_ops"])


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

    def compile_args(self, search_data) -> dict:
        """``model.compile(**search.compile_args(search_ds))``: the schedule, regulariser,
        α optimizer, ``unrolled``, ``skip_pruned_ops`` and the search split. A fresh α
        optimizer each call: compile each network with its own."""
        return compile_args(self.options, search_data)
