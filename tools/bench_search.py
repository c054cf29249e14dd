"""Time the search step on a fixed, seeded configuration with synthetic data.

Prints, as medians over ``--repeats`` runs of ``--steps`` steps after a warm-up:
ms per weight-only step, ms per weight+α step, images/s (of the weight+α step) and
peak memory. Each mode runs in a fresh process, as a user's search does (a second
model timed in the same process runs measurably faster than the first), so the
peak memory is that configuration's.

The warm-up (process start to the end of the first step) is split into: imports
and building the model; Python tracing of the network's forward and backward (the
nested gradient function); the first step (the outer step's trace, TensorFlow's
graph optimisation and function instantiation, and one run). The op count is the
number of nodes of the traced step, function library included.
``--e2e STEPS`` instead times a fresh process from start to a written genotype.json
after STEPS weight+α steps (synthetic data, the configuration's size).

    python tools/bench_search.py --config small --activation crb --reg proximity
    python tools/bench_search.py --config small --activation crb --pruned 0.5
    python tools/bench_search.py --config reference --jit-compile
    python tools/bench_search.py --config small --unfused      # one MixedEdge per edge
    python tools/bench_search.py --config small --dtype mixed_bfloat16
    python tools/bench_search.py --config small --e2e 300      # start → genotype.json
    python tools/bench_search.py --config small --full-tracing # without lean tracing

``--space recurrent`` times the recurrent search step (RecurrentSearchModel, crb +
proximity, an α step every step as the authors' default) at their search size (batch
256, bptt 35, 300 units, 10,000 words, random ids) against the authors' own step run by
tools/bench_rnn_reference.py with ``--reference-python`` on ``--reference-src``; the two
are timed in the same run, one step each in turn, and the medians and their ratio
printed, with a split of our step into pieces (forward parts, the weight gradients). Its
warm-up is imports and build, then the first step (trace, graph optimisation, one run);
waiting for the authors' warm-up is not counted:

    python tools/bench_search.py --space recurrent --reference-src .scratch/rnn/src \
        --reference-python .scratch/rnn/torchenv/bin/python --repeats 5
    python tools/bench_search.py --space recurrent --pruned 0.5 ...   # half the edges gone

Configurations: small (C=8, 5 layers, 16×16, batch 32) and reference (C=16, 8 layers,
32×32, batch 64). ``--pruned F`` prunes a seeded fraction F of the crb ops first.

With ``--reference-src`` (the authors' src/) and ``--reference-python`` (a Python with
torch), the weight+α mode also times the authors' step (tools/bench_cnn_reference.py, crb,
the same ops pruned: their ``w > 0`` skip applies) in the same run, one step of each in
turn after both warm-ups, and prints both medians and their ratio:

    python tools/bench_search.py --config small --pruned 0.5 --reference-src \
        .scratch/rnn/src --reference-python .scratch/rnn/torchenv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

T_START = time.perf_counter()  # process start, as near as Python gets
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# weight steps per α step: never, or every step
MODES = {"weight_only": 10**9, "weight_alpha": 1}
CONFIGS = {
    "small": dict(channels=8, layers=5, size=16, batch=32),
    "reference": dict(channels=16, layers=8, size=32, batch=64),
}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", choices=CONFIGS, default="small")
    parser.add_argument("--activation", choices=("crb", "softmax"), default="crb")
    parser.add_argument("--reg", choices=("proximity", "admm", "none"), default="proximity")
    parser.add_argument("--pruned", type=float, default=0.0,
                        help="fraction of crb ops pruned before timing (recurrent: of the "
                        "edges, every op of each; the step traced without them)")
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--dtype", default="float32",
                        choices=("float32", "mixed_float16", "mixed_bfloat16"),
                        help="the network's Keras dtype policy")
    parser.add_argument("--unfused", action="store_true", help="reference MixedEdge per edge")
    parser.add_argument("--unrolled", action="store_true")
    parser.add_argument("--skip-pruned-ops", default="auto",
                        choices=("auto", "levels", "every_step", "never"),
                        help="crb: compile(skip_pruned_ops=...): how pruned ops are left out")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    parser.add_argument("--inter-op", type=int, default=0,
                        help="TF inter-op threads (0: TF's default)")
    parser.add_argument("--intra-op", type=int, default=0,
                        help="TF intra-op threads (0: TF's default)")
    parser.add_argument("--grappler", default="",
                        help="graph-optimiser options, e.g. 'constant_folding=off,remapping=off' "
                             "(tf.config.optimizer.set_experimental_options)")
    parser.add_argument("--full-tracing", action="store_true",
                        help="trace without kdarts.compat.lean_tracing (every op records "
                        "its stack trace and ACD's full scan): what lean tracing saves")
    parser.add_argument("--e2e", type=int, metavar="STEPS", default=0,
                        help="time a fresh process from start to genotype.json after STEPS "
                             "weight+alpha steps")
    parser.add_argument("--space", choices=("conv", "recurrent"), default="conv")
    parser.add_argument("--reference-src", help="recurrent: the authors' src/ folder")
    parser.add_argument("--reference-python", help="recurrent: a Python with torch")
    parser.add_argument("--rnn-size", default="256,35,300,10000",
                        help="recurrent: batch,bptt,units,vocab")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--e2e-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.space == "recurrent":
        return _run_recurrent(args)
    if args.e2e and args.e2e_out is None:
        return _run_e2e(args, argv if argv is not None else sys.argv[1:])
    if args.mode is None and not args.e2e:  # each mode in a fresh process, as a search runs
        return _run_modes(args, argv if argv is not None else sys.argv[1:])

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    if args.grappler:
        options = dict(item.split("=") for item in args.grappler.split(","))
        tf.config.optimizer.set_experimental_options(
            {k: v.lower() in ("on", "true", "1") for k, v in options.items()})

    import kdarts

    if args.full_tracing:
        kdarts.compat.lean_tracing = contextlib.nullcontext  # read at each train call
    cfg = CONFIGS[args.config]
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    n = cfg["batch"] * 4
    x = rng.random((n, cfg["size"], cfg["size"], 3), dtype=np.float32)
    y = rng.integers(0, 10, n).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg["batch"], drop_remainder=True)
    ds = ds.repeat().prefetch(2)

    every = MODES[args.mode or "weight_alpha"]
    model = kdarts.SearchNetwork(10, channels=cfg["channels"], layers=cfg["layers"],
                                 activation=args.activation, fused=not args.unfused,
                                 dtype=args.dtype)
    model.build((cfg["batch"], cfg["size"], cfg["size"], 3))
    keeps = []
    if args.pruned > 0:
        if args.activation != "crb":
            parser.error("--pruned needs --activation crb")
        for i, (alpha, mask) in enumerate(zip(model.arch_variables,
                                              [model.mask_normal, model.mask_reduce])):
            # the same seeded mask for both modes: they time the same network
            mask_rng = np.random.default_rng([args.seed, i])
            keep = (mask_rng.random(tuple(mask.shape)) >= args.pruned).astype(np.float32)
            mask.assign(keep)
            alpha.assign(alpha.numpy() * keep)
            keeps.append(keep.astype(int).tolist())
    skip = args.skip_pruned_ops
    if skip == "auto":  # the step a search long enough for "levels" would run: the timed
        # fits here are a few steps, which "auto" would judge too short to retrace for
        skip = model.pruned_ops_mode(total_steps=10**9)
    model.compile(schedule=kdarts.FixedSchedule(every), regularizer=args.reg,
                  search_data=ds, unrolled=args.unrolled, jit_compile=args.jit_compile,
                  skip_pruned_ops=skip)
    if args.e2e:
        model.fit(ds, epochs=1, steps_per_epoch=args.e2e, verbose=0)
        model.genotype().save(args.e2e_out)
        out = {"process_s": round(time.perf_counter() - T_START, 1)}
        print(json.dumps(out))
        return out  # a non-empty result: the process exits 0
    t_built = time.perf_counter()
    # Python tracing of forward + backward: the nested gradient function, alone
    x0, y0 = next(iter(ds))
    traced = tf.function(lambda x, y: model._gradients(x, y)[0], autograph=False)
    with (model._tracing_kept(model._update_kept())
          if model.pruned_ops_mode() == "levels"
          else contextlib.nullcontext()):  # the edges the step will run each op on
        with kdarts.compat.lean_tracing():  # as the train function traces it
            graph = traced.get_concrete_function(x0, y0).graph.as_graph_def()
    t_traced = time.perf_counter()
    op_count = len(graph.node) + sum(len(f.node_def) for f in graph.library.function)
    model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)  # outer trace, optimise, one run
    t_first = time.perf_counter()
    pruned_before = _pruned(model)
    child = None
    if args.reference_src and args.mode == "weight_alpha":  # the authors' step, in turn
        if args.activation != "crb":
            parser.error("--reference-src: the authors' step is timed with crb")
        child = _start_cnn_reference(args, cfg, keeps)
    runs, theirs = [], []
    for _ in range(args.repeats):
        times = _step_times(model, ds, args.steps, child)
        runs.append(statistics.median(times[0]))
        if child:
            theirs.append(statistics.median(times[1]))
    if child:
        child.stdin.close()
        child.wait()
    step_s = statistics.median(runs)
    out = dict(ms=1000 * step_s, runs_ms=[round(1000 * t, 1) for t in runs],
               warmup=dict(imports_build_s=round(t_built - T_START, 1),
                           trace_s=round(t_traced - t_built, 1),
                           first_step_s=round(t_first - t_traced, 1),
                           optimise_s=round(max(0.0, t_first - t_traced - step_s), 1),
                           total_s=round(t_first - T_START, 1)),
               op_count=op_count, functions=len(graph.library.function),
               pruned_ops_mode=model.pruned_ops_mode(),
               pruned_ops=[pruned_before, _pruned(model)],
               peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if child:
        out.update(theirs_ms=statistics.median(theirs), theirs_runs_ms=theirs,
                   theirs_pruned_ops=child.pruned)
    print(json.dumps(out))
    return out


def _start_cnn_reference(args, cfg, keeps):
    """The authors' image step (tools/bench_cnn_reference.py) at this configuration, with
    the same ops pruned; returns the child once it has warmed up."""
    command = [args.reference_python or sys.executable,
               os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_cnn_reference.py"),
               args.reference_src, "--channels", str(cfg["channels"]), "--layers",
               str(cfg["layers"]), "--size", str(cfg["size"]), "--batch", str(cfg["batch"]),
               "--reg", {"proximity": "prox", "admm": "admm", "none": "darts"}[args.reg]]
    if keeps:
        command += ["--keep", json.dumps(keeps)]
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ready = child.stdout.readline().split()
    if not ready or ready[0] != "ready":
        sys.exit("bench_search: the authors' step did not start")
    child.pruned = int(ready[1])
    return child


def _run_e2e(args, argv) -> dict:
    """One fresh process, timed from its start to a written genotype.json."""
    with tempfile.TemporaryDirectory() as tmp:
        genotype = os.path.join(tmp, "genotype.json")
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, *argv, "--e2e-out", genotype],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0 or not os.path.exists(genotype):
            sys.exit(f"bench_search: the end-to-end run failed:\n{done.stderr[-3000:]}")
    cfg = CONFIGS[args.config]
    out = dict(config=args.config, **cfg, activation=args.activation, reg=args.reg,
               e2e_steps=args.e2e, e2e_s=round(wall, 1),
               inside_python_s=json.loads(done.stdout.strip().splitlines()[-1])["process_s"])
    print(json.dumps(out) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in out.items()))
    return out


def _run_modes(args, argv) -> dict:
    """Time each mode in its own process and print the combined figures."""
    results = {}
    for mode in MODES:
        done = subprocess.run([sys.executable, __file__, *argv, "--mode", mode],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"bench_search: the {mode} run failed:\n{done.stderr[-3000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    cfg = CONFIGS[args.config]
    wa = results["weight_alpha"]
    out = dict(config=args.config, **cfg, activation=args.activation, reg=args.reg,
               pruned=args.pruned, jit_compile=args.jit_compile, fused=not args.unfused,
               dtype=args.dtype, unrolled=args.unrolled,
               skip_pruned_ops=f"{args.skip_pruned_ops} ({wa['pruned_ops_mode']})",
               inter_op=args.inter_op, intra_op=args.intra_op,
               grappler=args.grappler or "default", lean_tracing=not args.full_tracing,
               weight_only_ms=round(results["weight_only"]["ms"], 1),
               weight_alpha_ms=round(wa["ms"], 1),
               images_per_s=round(cfg["batch"] / (wa["ms"] / 1000), 1),
               peak_rss_mb=max(r["peak_rss_mb"] for r in results.values()),
               warmup=wa["warmup"], op_count=wa["op_count"], functions=wa["functions"],
               runs_weight_only_ms=results["weight_only"]["runs_ms"],
               runs_weight_alpha_ms=wa["runs_ms"],
               pruned_ops_before_after=wa["pruned_ops"])
    if "theirs_ms" in wa:  # same run, step by step in turn: the ratio is the figure to quote
        out.update(theirs_weight_alpha_ms=round(wa["theirs_ms"], 1),
                   theirs_runs_ms=[round(t, 1) for t in wa["theirs_runs_ms"]],
                   theirs_pruned_ops=wa["theirs_pruned_ops"],
                   speedup=round(wa["theirs_ms"] / wa["ms"], 2))
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")
    return out


def _run_recurrent(args) -> dict:
    """Our recurrent search step and the authors', interleaved step by step in one run."""
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op)
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op)
    from kdarts.recurrent.data import BPTTStream
    from kdarts.recurrent.operations import sequence_nll
    from kdarts.recurrent.search_model import RecurrentSearchModel
    from kdarts.search.schedules import FixedSchedule

    batch, bptt, units, vocab = (int(v) for v in args.rnn_size.split(","))
    t_imported = time.perf_counter()
    child = None
    if args.reference_src:
        child = subprocess.Popen(
            [args.reference_python or sys.executable,
             os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_rnn_reference.py"),
             args.reference_src, "--batch", str(batch), "--bptt", str(bptt), "--units",
             str(units), "--vocab", str(vocab), "--alpha",
             "--reg", "prox" if args.reg == "proximity" else "darts"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if child.stdout.readline().strip() != "ready":
            sys.exit("bench_search: the authors' step did not start")
    t_child = time.perf_counter()  # the authors' warm-up, waited for, is not ours
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, vocab, batch * (bptt * (args.steps * args.repeats + 4) + 2))
    model = RecurrentSearchModel(vocab, units, activation=args.activation, seed=args.seed)
    model.build((batch, bptt))
    pruned_edges = _prune_recurrent_edges(model, args.pruned, args.seed) if args.pruned else 0
    train = BPTTStream(ids, batch, bptt, variable=False)
    model.compile(schedule=FixedSchedule(1), regularizer=args.reg, unrolled=args.unrolled,
                  search_data=BPTTStream(ids[::-1].copy(), batch, bptt, variable=False),
                  jit_compile=args.jit_compile,
                  skip_pruned_ops="levels" if args.pruned else args.skip_pruned_ops)
    class FirstStep(keras.callbacks.Callback):
        end = None

        def on_train_batch_end(self, batch, logs=None):
            self.end = self.end or time.perf_counter()
            self.model.stop_training = True

    t_built = time.perf_counter()
    first = FirstStep()
    # a BPTTStream's epoch is a pass over the text: stop after the first step (trace,
    # optimise, one run)
    model.fit(train, epochs=1, verbose=0, callbacks=[first])
    warmup = dict(imports_build_s=round(t_imported - T_START + t_built - t_child, 1),
                  first_step_s=round(first.end - t_built, 1))
    warmup["total_s"] = round(warmup["imports_build_s"] + warmup["first_step_s"], 1)
    fn = model.train_function
    # the stream fit feeds the step (the segments as the model's plan pairs them)
    iterator = iter(model._plan_fit(train, None, 1, 0, None).stream(0).repeat())
    ours, theirs = [], []
    for _ in range(args.repeats):
        if child:
            child.stdin.write("step\n")
            child.stdin.flush()
            theirs.append(float(child.stdout.readline()))
        t = time.perf_counter()
        float(fn(iterator)["loss"])
        ours.append(1000 * (time.perf_counter() - t))
    if child:
        child.stdin.close()
        child.wait()
    # where our time goes: pieces as their own compiled functions, medians of 3
    x = tf.constant(ids[:batch * bptt].reshape(bptt, batch).astype(np.int32))
    h = tf.zeros([batch, units])
    emb = tf.gather(model.embedding, x)
    outputs = model.cell(emb, h, model.activated_weights(), training=True)[0]
    pieces = {
        "embedding_gather": lambda: tf.gather(model.embedding, x),
        "cell_forward": lambda: model.cell(emb, h, model.activated_weights(),
                                           training=True)[0],
        "decoder_log_softmax": lambda: tf.nn.log_softmax(
            tf.einsum("tbu,vu->tbv", outputs, model.embedding) + model.decoder_bias),
        "forward_loss": lambda: sequence_nll(model.forward(x, h, training=True)[0], x),
        "weight_gradients": lambda: model.weight_gradients(x, x, h)[2],
    }
    split = {}
    for name, piece in pieces.items():
        f = tf.function(piece, autograph=False, jit_compile=bool(args.jit_compile))
        f()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            np.asarray(tf.nest.flatten(f())[0])
            times.append(1000 * (time.perf_counter() - t))
        split[name + "_ms"] = round(statistics.median(times), 1)
    out = dict(space="recurrent", batch=batch, bptt=bptt, units=units, vocab=vocab,
               activation=args.activation, reg=args.reg, unrolled=args.unrolled,
               pruned_edges=f"{pruned_edges} of {model.alpha.shape[0]}",
               jit_compile=args.jit_compile, warmup=warmup,
               ours_ms=round(statistics.median(ours), 1), ours_runs_ms=[round(v) for v in ours])
    if theirs:
        out.update(theirs_ms=round(statistics.median(theirs), 1),
                   theirs_runs_ms=[round(v) for v in theirs],
                   speedup=round(statistics.median(theirs) / statistics.median(ours), 2))
    out.update(split, peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    print(json.dumps(out) if args.json else "\n".join(f"{k:>24}: {v}" for k, v in out.items()))
    return out


def _prune_recurrent_edges(model, fraction: float, seed: int) -> int:
    """Prune every op of a seeded ``fraction`` of the recurrent cell's edges (mask and α
    0, as crb leaves them), each node keeping at least one: what a search has pruned by
    then. Returns how many edges."""
    import numpy as np

    if model.activation != "crb":
        sys.exit("bench_search: --pruned needs --activation crb")
    rng = np.random.default_rng(seed)
    steps = model.steps
    starts = np.cumsum([0] + [i + 1 for i in range(steps)])  # node i: rows starts[i]..+i
    candidates = [row for i in range(steps) for row in range(starts[i], starts[i + 1])]
    chosen: list[int] = []
    for row in rng.permutation(candidates):
        if len(chosen) >= round(fraction * starts[-1]):
            break
        node = int(np.searchsorted(starts, row, side="right") - 1)
        left = [r for r in range(starts[node], starts[node + 1]) if r not in chosen]
        if len(left) > 1:  # the node keeps an edge
            chosen.append(int(row))
    mask, alpha = model.mask.numpy(), model.alpha.numpy()
    mask[chosen], alpha[chosen] = 0.0, 0.0
    model.mask.assign(mask)
    model.alpha.assign(alpha)
    return len(chosen)


def _pruned(model) -> int:
    return int(sum(float((1.0 - m).numpy().sum()) for m in (model.mask_normal,
                                                             model.mask_reduce)))


def _step_times(model, ds, steps: int, child=None) -> tuple[list[float], list[float]]:
    """Seconds per compiled step (reading the loss back makes sure the step has finished),
    and with ``child`` (the authors' step) its milliseconds, one of its steps before each."""
    iterator, times, theirs = iter(model.paired_stream(ds)), [], []
    for _ in range(steps):
        if child:
            child.stdin.write("step\n")
            child.stdin.flush()
            theirs.append(float(child.stdout.readline()))
        fn = model.train_function  # a new level of pruning traces the step again
        t = time.perf_counter()
        float(fn(iterator)["loss"])
        times.append(time.perf_counter() - t)
    return times, theirs


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
