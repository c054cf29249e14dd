"""The figures, from a synthetic search record (no network, no training)."""

import json
import struct

import numpy as np
import pytest

from kdarts.image.genotype import CRB_PRIMITIVES, DARTS_V2, Genotype, discretize
from kdarts.plots import plot_alpha, plot_genotype, plot_schedule

# its module fixtures are built once: keep the file on one test worker
pytestmark = pytest.mark.xdist_group("plots")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_record(epochs=6, steps_per_epoch=25, steps=4, primitives=CRB_PRIMITIVES,
                     seed=0, activation="crb"):
    """A record shaped like SearchRecorder's: α drifting apart, some ops pruned."""
    rng = np.random.default_rng(seed)
    n_edges = sum(2 + i for i in range(steps))
    n_ops = len(primitives)
    alpha = {c: 1.0 / n_ops + 1e-4 * rng.standard_normal((n_edges, n_ops)) for c in ("n", "r")}
    drift = {c: 0.02 * rng.standard_normal((n_edges, n_ops)) for c in ("n", "r")}
    mask = {c: np.ones((n_edges, n_ops)) for c in ("n", "r")}
    record = {"version": 1, "primitives": list(primitives), "activation": activation,
              "steps": steps, "steps_per_epoch": steps_per_epoch, "epochs": [], "batches": []}
    threshold, ewma, pruned_total = 1.0, None, 0.0
    concat = list(range(2, steps + 2))
    for epoch in range(epochs + 1):
        if epoch:
            for c in ("n", "r"):
                alpha[c] = np.clip(alpha[c] + drift[c], 0, 1) * mask[c]
                mask[c] = mask[c] * (alpha[c] > 0)
        act = {c: np.clip(alpha[c], 0, 1) * mask[c] for c in ("n", "r")}
        genes = {c: discretize(act[c], primitives, steps)[0] for c in ("n", "r")}
        genotype = Genotype(genes["n"], concat, genes["r"], concat)
        record["epochs"].append({
            "epoch": epoch, "step": epoch * steps_per_epoch,
            "alpha_normal": act["n"].tolist(), "alpha_reduce": act["r"].tolist(),
            "mask_normal": mask["n"].tolist(), "mask_reduce": mask["r"].tolist(),
            "genotype": genotype.to_dict(),
        })
        if epoch == epochs:
            break
        for b in range(steps_per_epoch):
            step = epoch * steps_per_epoch + b + 1
            fi = float(np.exp(rng.normal(1.5 - 0.2 * epoch, 0.5)))
            ewma = fi if ewma is None else 0.2 * fi + 0.8 * ewma
            took = 0.0 < ewma < threshold
            threshold *= 1.05 ** -10 if took else 1.05
            pruned_total = float((1 - mask["n"]).sum() + (1 - mask["r"]).sum())
            record["batches"].append({
                "step": step, "step_fi": fi, "fi_ewma": ewma, "threshold": threshold,
                "took_alpha_step": float(took), "pruned_ops": pruned_total,
                "alpha_steps": 0.0, "loss": 1.0,
            })
    return record


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def record():
    return synthetic_record()


@pytest.mark.slow
def test_plot_alpha_writes_png(tmp_path, record):
    out = tmp_path / "alpha.png"
    assert plot_alpha(record, out) == str(out)
    width, height = png_size(out)
    assert width >= 1000 and height >= 1000
    assert out.stat().st_size > 50_000  # 2 × 14 subplots with lines, not an empty canvas
    assert [p.name for p in tmp_path.iterdir()] == ["alpha.png"]  # no temp file left


def test_plot_alpha_from_json_path_and_small_cells(tmp_path):
    rec = synthetic_record(epochs=2, steps_per_epoch=3, steps=2,
                           primitives=("max_pool_3x3", "skip_connect", "sep_conv_3x3"),
                           activation="softmax")
    path = tmp_path / "rec.json"
    path.write_text(json.dumps(rec))
    out = plot_alpha(str(path), tmp_path / "a.png")
    width, height = png_size(out)
    assert width > 400 and height > 400


@pytest.mark.slow
def test_alpha_shared_axis_and_initial_value(tmp_path, record):
    """shared_axis puts every panel on act(α)'s absolute 0..1 axis; every panel (shared or
    zoomed) marks the initial act(α)."""
    from kdarts.plots import alpha_figure

    initial = float(np.mean(record["epochs"][0]["alpha_normal"]
                            + record["epochs"][0]["alpha_reduce"]))
    for shared in (True, False):
        panels = [ax for ax in alpha_figure(record, shared_axis=shared).axes if ax.axison]
        assert len(panels) == 2 * 14
        for ax in panels:
            lines = [line for line in ax.lines if line.get_gid() == "initial"]
            assert len(lines) == 1 and np.allclose(lines[0].get_ydata(), initial)
        limits = {tuple(ax.get_ylim()) for ax in panels}
        assert (limits == {(0.0, 1.0)}) == shared  # zoomed: a narrower range, shared by all
        assert len(limits) == 1
    assert png_size(plot_alpha(record, tmp_path / "a.png", shared_axis=True))[0] >= 1000


def test_plot_schedule_writes_png(tmp_path, record):
    out = plot_schedule(record, tmp_path / "sub" / "schedule.png")
    width, height = png_size(out)
    assert width >= 800 and 400 <= height <= 1000
    assert (tmp_path / "sub" / "schedule.png").stat().st_size > 20_000


def test_plot_schedule_needs_batches(tmp_path, record):
    with pytest.raises(ValueError, match="per-step"):
        plot_schedule({**record, "batches": []}, tmp_path / "s.png")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("genotype", [DARTS_V2, "DARTS_V1"])
def test_plot_genotype_writes_png(tmp_path, genotype):
    out = plot_genotype(genotype, tmp_path / "g.png")
    width, height = png_size(out)
    assert width >= 800 and height >= 600
    assert (tmp_path / "g.png").stat().st_size > 20_000


def _pixels(path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _colour_counts(pixels: np.ndarray, colours: dict | None = None) -> dict[str, int]:
    """Pixels of exactly each op's colour (arrows and labels are drawn in it)."""
    from matplotlib.colors import to_rgb

    from kdarts.plots import OP_COLORS

    return {op: int((np.abs(pixels - np.rint(255 * np.array(to_rgb(c)))).sum(-1) == 0).sum())
            for op, c in (colours or OP_COLORS).items()}


@pytest.mark.slow
def test_plot_genotype_from_record_dict(tmp_path, record):
    """A record's genotype dict draws exactly what its Genotype draws, every kept op in its
    colour; another genotype draws another picture, without the ops it lacks."""
    data = record["epochs"][-1]["genotype"]
    genotype = Genotype.from_dict(data)
    assert genotype != DARTS_V2
    drawn = _pixels(plot_genotype(data, tmp_path / "dict.png"))
    np.testing.assert_array_equal(drawn, _pixels(plot_genotype(genotype, tmp_path / "g.png")))
    height, width, _ = drawn.shape
    assert width >= 800 and height >= 600
    assert (drawn != 255).any(-1).mean() > 0.02  # not a blank canvas
    ops = {op for op, _ in genotype.normal + genotype.reduce}
    counts = _colour_counts(drawn)
    assert all(counts[op] >= 100 for op in ops), counts

    other = _pixels(plot_genotype(DARTS_V2, tmp_path / "v2.png"))
    assert other.shape != drawn.shape or (other != drawn).any()
    v2_ops = {op for op, _ in DARTS_V2.normal + DARTS_V2.reduce}
    counts = _colour_counts(other)
    assert all(counts[op] >= 100 for op in v2_ops), counts
    assert all(counts[op] == 0 for op in ops - v2_ops), counts


def test_plot_genotype_draws_a_recurrent_cell(tmp_path):
    """A recurrent genotype (object, dict or JSON file) draws its one cell: the same
    picture from each form, every kept activation in its colour; DARTS_V1 (no sigmoid)
    draws another picture without sigmoid's colour."""
    from kdarts.plots import RECURRENT_OP_COLORS
    from kdarts.recurrent.genotype import DARTS_V1, DARTS_V2

    v2 = _pixels(plot_genotype(DARTS_V2, tmp_path / "v2.png"))
    as_dict = plot_genotype(DARTS_V2.to_dict(), tmp_path / "d.png")
    np.testing.assert_array_equal(v2, _pixels(as_dict))
    (tmp_path / "cell.json").write_text(json.dumps(DARTS_V2.to_dict()))
    np.testing.assert_array_equal(
        v2, _pixels(plot_genotype(str(tmp_path / "cell.json"), tmp_path / "f.png")))
    assert (v2 != 255).any(-1).mean() > 0.02  # not a blank canvas
    counts = _colour_counts(v2, RECURRENT_OP_COLORS)
    assert all(counts[op] >= 100 for op, _ in DARTS_V2.recurrent), counts

    v1 = _pixels(plot_genotype(DARTS_V1, tmp_path / "v1.png"))
    assert v1.shape != v2.shape or (v1 != v2).any()
    counts = _colour_counts(v1, RECURRENT_OP_COLORS)
    assert all(counts[op] >= 100 for op, _ in DARTS_V1.recurrent), counts
    assert counts["sigmoid"] == 0, counts


def test_plot_overwrites_atomically(tmp_path, record):
    out = tmp_path / "g.png"
    out.write_bytes(b"old")
    plot_genotype(DARTS_V2, out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]


def _texts(fig):
    return {t.get_text() for ax in fig.axes for t in ax.texts} | {
        ax.get_title() for ax in fig.axes}


def test_one_node_numbering_in_show_plots_and_errors(record):
    """genotype.json, `kdarts show`, both figures and validation errors: inputs 0 and 1,
    intermediate nodes 2..5."""
    from kdarts.genotype import GenotypeError
    from kdarts.plots import alpha_figure, genotype_figure

    assert "node 2 = sep_conv_3x3(0) + sep_conv_3x3(1)" in str(DARTS_V2)
    texts = _texts(genotype_figure(DARTS_V2))
    assert {"0: c$_{k-2}$", "1: c$_{k-1}$", "2", "3", "4", "5"} <= texts
    assert not {"c$_{k-2}$", "c$_{k-1}$"} & texts  # no second name for the inputs
    titles = {ax.get_title() for ax in alpha_figure(record).axes}
    # edge (source 2 → node 5) exists, and no title uses the old 0-based node names
    assert {"0 → 2", "1 → 2", "2 → 5", "4 → 5"} <= {t.split(":")[0] for t in titles}
    assert not [t for t in titles if "node" in t]
    bad = DARTS_V2.to_dict()
    bad["normal"][6] = ["skip_connect", 5]  # the pair feeding node 5 names node 5 itself
    with pytest.raises(GenotypeError, match=r"out of range for node 5 \(expected 0..4\)"):
        Genotype.from_dict(bad)
