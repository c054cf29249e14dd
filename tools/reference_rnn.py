"""Numbers from the authors' recurrent search cell, for kdarts's parity test.

Runs DARTS-PRIME's own PyTorch modules (``model_search_rnn.py``, ``model_rnn.py``,
``genotypes_rnn.py``, ``utils_rnn.py`` from a checkout of their ``src/`` folder) at a
tiny size, with every dropout off, in float64, and writes
``tests/data/recurrent_reference.npz``: for the crb and the softmax cell, the weights,
α, a segment, the hidden state, the log-probabilities, the α gradient (CE + proximity),
the weight gradients (CE + slowness), FI, and the weights after one step of the
authors' weight update (clip 0.25, SGD lr 20, L2 5e-7); plus the parameter counts of
their search model (emsize 300) and of DARTS_V2's evaluation model (850), both with a
10,000-word vocabulary.

With ``--eval-out`` it also writes ``tests/data/recurrent_eval_reference.npz``: their
evaluation model (``model_rnn.RNNModel`` with ``DARTSCell``) for DARTS_V2 at the same
tiny size, dropouts off: the weights, a segment, the hidden state, the
log-probabilities, the last hidden state, the loss (NLL + activation and temporal
activation regularisers) and its weight gradients; and ``torch.optim.ASGD`` as their
``train_rnn.py`` switches to it (t0 0, λ 0, L2 8e-7) on a toy least-squares problem,
the learning rate rescaled before every step as their loop does: each step's
parameters and averages.

It needs PyTorch and numpy only (not kdarts, not TensorFlow), in an environment of
its own:

    python -m venv torchenv && torchenv/bin/pip install torch numpy
    git --git-dir=<DARTS-PRIME mirror> archive HEAD src | tar -x -C checkout/
    torchenv/bin/python tools/reference_rnn.py checkout/src \
        --eval-out tests/data/recurrent_eval_reference.npz
"""

from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
import sys

import numpy as np

VOCAB, UNITS, TIME, BATCH = 50, 8, 6, 4
CLOCK, EPOCHS, RHO, SLOWNESS = 0.5, 2, 0.1, 1e-3  # proximity weight (t/T)·ρ/2 = 0.025
LR, CLIP, WEIGHT_DECAY = 20.0, 0.25, 5e-7
EVAL_AR, EVAL_TAR = 2.0, 1e-3  # the evaluation loss's α (AR, their default 0) and β (TAR)
ASGD_STEPS, ASGD_WEIGHT_DECAY = 6, 8e-7


def import_reference(src: pathlib.Path):
    """The authors' modules, on the CPU: their ``.cuda()`` calls become no-ops."""
    import torch

    sys.path.insert(0, str(src))
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    import genotypes_rnn
    import model_rnn
    import model_search_rnn

    return torch, model_search_rnn, model_rnn, genotypes_rnn


def weights_of(model) -> dict:
    """kdarts's names for the reference model's parameters."""
    cell = model.rnns[0]
    return {"embedding": model.encoder.weight, "decoder_bias": model.decoder.bias,
            "w0": cell._W0, "node_kernels": list(cell._Ws)}


def set_random_weights(torch, model, rng) -> dict:
    """Draw the cell's and embedding's weights from ``rng``, load them into ``model``,
    and return them by name (the order of draws is part of the stored numbers)."""
    values = {
        "embedding": rng.uniform(-0.5, 0.5, (VOCAB, UNITS)),
        "decoder_bias": rng.uniform(-0.1, 0.1, VOCAB),
        "w0": rng.uniform(-0.3, 0.3, (2 * UNITS, 2 * UNITS)),
        "node_kernels": rng.uniform(-0.3, 0.3, (8, UNITS, 2 * UNITS)),
    }
    with torch.no_grad():
        for name, param in weights_of(model).items():
            if name == "node_kernels":
                for p, v in zip(param, values[name]):
                    p.copy_(torch.from_numpy(v))
            else:
                param.copy_(torch.from_numpy(values[name]))
    return values


def set_random_search_state(torch, model, rng, crb: bool):
    """:func:`set_random_weights`, then α drawn after them: (weights by name, α)."""
    values = set_random_weights(torch, model, rng)
    ops = model.weights.shape[1]
    # α away from crb's clip points, so both sides take the same (interior) gradient
    alpha = rng.uniform(0.05, 0.6, (36, ops)) if crb else rng.normal(0.0, 0.5, (36, ops))
    with torch.no_grad():
        model.weights.copy_(torch.from_numpy(alpha))
    return values, alpha


def case(torch, search, crb: bool, seed: int) -> dict:
    """One activation's numbers; keys without the activation's prefix."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    model = search.RNNModelSearch(crb, RHO, 1.0, "prox", EPOCHS, VOCAB, UNITS, UNITS, UNITS,
                                  0.0, 0.0, 0.0, 0.0, 0.0)
    model.clock = CLOCK
    cell = model.rnns[0]
    values, alpha = set_random_search_state(torch, model, rng, crb)
    # inputs leave out the last word: the authors' embedding lookup (AWD-LSTM's
    # embedded_dropout) passes padding_idx=-1, which PyTorch reads as the last row, so
    # that word's input embedding gets no gradient. An accident kdarts does not copy.
    tokens = rng.integers(0, VOCAB - 1, (TIME, BATCH))
    targets = rng.integers(0, VOCAB, (TIME, BATCH))
    hidden = rng.normal(0.0, 0.5, (BATCH, UNITS))
    x, y = torch.from_numpy(tokens), torch.from_numpy(targets)
    h = [torch.from_numpy(hidden)[None]]
    model.train()  # batch statistics; every dropout rate is 0, so every mask is ones

    # the α loss: CE + the proximity term, the authors' _loss
    with contextlib.redirect_stdout(io.StringIO()):  # their _loss prints its terms
        loss, _ = model._loss(h, x, y.reshape(-1))
    loss.backward()
    d_alpha = model.weights.grad.detach().numpy().copy()
    bn = cell.bn
    moving = (bn.running_mean.numpy().copy(), bn.running_var.numpy().copy())
    model.zero_grad()

    # the weight loss: CE + β·slowness (their train loop), then FI, clip and SGD
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=LR, weight_decay=WEIGHT_DECAY)
    optimizer.zero_grad()
    log_prob, new_h, raw, _ = model(x, h, return_h=True)
    ce = F.nll_loss(log_prob.view(-1, VOCAB), y.reshape(-1))
    w_loss = ce + SLOWNESS * (raw[-1][1:] - raw[-1][:-1]).pow(2).mean()
    w_loss.backward()
    model.track_FI()
    grads = {n: (torch.stack([p.grad for p in v]) if n == "node_kernels" else v.grad)
             .detach().numpy().copy() for n, v in weights_of(model).items()}
    torch.nn.utils.clip_grad_norm_(params, CLIP)
    optimizer.step()
    stepped = {n: (torch.stack(list(v)) if n == "node_kernels" else v).detach().numpy().copy()
               for n, v in weights_of(model).items()}

    out = {"alpha": alpha, "tokens": tokens, "targets": targets, "hidden": hidden,
           "log_probs": log_prob.detach().numpy(), "last_hidden": new_h[0][0].detach().numpy(),
           "alpha_loss": loss.item(), "ce": ce.item(), "weight_loss": w_loss.item(),
           "d_alpha": d_alpha, "fi": float(model.FI), "moving_mean": moving[0],
           "moving_variance": moving[1]}
    out.update({f"w.{n}": v for n, v in values.items()})
    out.update({f"grad.{n}": v for n, v in grads.items()})
    out.update({f"step.{n}": v for n, v in stepped.items()})
    return out


def parameter_counts(torch, search, model_rnn, genotypes) -> dict:
    """Parameters of the authors' search model (300) and DARTS_V2's evaluation model (850)."""
    counts = {}
    for crb in (False, True):
        model = search.RNNModelSearch(crb, RHO, 1.0, "prox", EPOCHS, 10000, 300, 300, 300)
        counts[f"search_300_{'crb' if crb else 'softmax'}"] = sum(
            p.nelement() for p in model.parameters())
    model = model_rnn.RNNModel(10000, 850, 850, 850, cell_cls=model_rnn.DARTSCell,
                               genotype=genotypes.DARTS_V2)
    counts["eval_850_darts_v2"] = sum(p.nelement() for p in model.parameters())
    return counts


def eval_case(torch, model_rnn, genotypes, seed: int = 7) -> dict:
    """DARTS_V2's evaluation model: forward, loss and weight gradients, dropouts off."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    model = model_rnn.RNNModel(VOCAB, UNITS, UNITS, UNITS, 0.0, 0.0, 0.0, 0.0, 0.0,
                               cell_cls=model_rnn.DARTSCell, genotype=genotypes.DARTS_V2)
    values = set_random_weights(torch, model, rng)
    # the last word left out of the inputs, as in case(): padding_idx=-1 there too
    tokens = rng.integers(0, VOCAB - 1, (TIME, BATCH))
    targets = rng.integers(0, VOCAB, (TIME, BATCH))
    hidden = rng.normal(0.0, 0.5, (BATCH, UNITS))
    model.train()  # every dropout rate is 0, so every mask is ones
    log_prob, new_h, raw, dropped = model(torch.from_numpy(tokens),
                                          [torch.from_numpy(hidden)[None]], return_h=True)
    nll = F.nll_loss(log_prob.view(-1, VOCAB), torch.from_numpy(targets).reshape(-1))
    loss = (nll + EVAL_AR * dropped[-1].pow(2).mean()
            + EVAL_TAR * (raw[-1][1:] - raw[-1][:-1]).pow(2).mean())
    loss.backward()
    grads = {n: (torch.stack([p.grad for p in v]) if n == "node_kernels" else v.grad)
             .detach().numpy().copy() for n, v in weights_of(model).items()}
    out = {"tokens": tokens, "targets": targets, "hidden": hidden,
           "log_probs": log_prob.detach().numpy(), "last_hidden": new_h[0][0].detach().numpy(),
           "nll": nll.item(), "loss": loss.item()}
    out.update({f"w.{n}": v for n, v in values.items()})
    out.update({f"grad.{n}": v for n, v in grads.items()})
    return out


def asgd_case(torch, seed: int = 11) -> dict:
    """``torch.optim.ASGD`` as their loop uses it, on ½‖A·p − b‖²: every step's p and average."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(5, 3)), rng.normal(size=5)
    start = rng.normal(size=3)
    scales = rng.uniform(0.5, 1.5, ASGD_STEPS)  # their seq_len / bptt
    lr = 0.1
    p = torch.nn.Parameter(torch.from_numpy(start.copy()))
    optimizer = torch.optim.ASGD([p], lr=lr, t0=0, lambd=0.0, weight_decay=ASGD_WEIGHT_DECAY)
    params, averages = [], []
    for scale in scales:
        optimizer.param_groups[0]["lr"] = lr * scale
        optimizer.zero_grad()
        loss = 0.5 * (torch.from_numpy(a) @ p - torch.from_numpy(b)).pow(2).sum()
        loss.backward()
        optimizer.step()
        optimizer.param_groups[0]["lr"] = lr
        params.append(p.detach().numpy().copy())
        averages.append(optimizer.state[p]["ax"].numpy().copy())
    return {"a": a, "b": b, "start": start, "scales": scales, "lr": lr,
            "params": np.stack(params), "averages": np.stack(averages)}


def unrolled_case(torch, search, architect_rnn, crb: bool, seed: int) -> dict:
    """One unrolled (second-order) α gradient of the authors' architect, every dropout off.

    Their ``RNNModelSearch.new`` passes its constructor's arguments shifted by five (the
    unrolled model cannot be built); here it builds the same model and copies α, as the
    method means. Their copy starts with clock 0, so no proximity term: the regulariser
    is "darts" (none) on both sides. The search segment is one step shorter than the
    train segment, and the step's learning rate is 20 × 5/6 (a shorter segment's).
    """
    import types

    def new(self):
        model = type(self)(self._crb, self._rho, self._ewma, self._reg, self.total_epochs,
                           *self._args)
        with torch.no_grad():
            model.weights.copy_(self.weights)
        return model

    search.RNNModelSearch.new = new
    rng = np.random.default_rng(100 + seed)
    model = search.RNNModelSearch(crb, RHO, 1.0, "darts", EPOCHS, VOCAB, UNITS, UNITS, UNITS,
                                  0.0, 0.0, 0.0, 0.0, 0.0)
    values, alpha = set_random_search_state(torch, model, rng, crb)
    args = types.SimpleNamespace(wdecay=WEIGHT_DECAY, clip=CLIP, arch_lr=3e-3, arch_wdecay=1e-3)
    architect = architect_rnn.Architect(model, args)
    eta = LR * 5 / 6
    optimizer = torch.optim.SGD(model.parameters(), lr=eta, weight_decay=WEIGHT_DECAY)
    tokens = rng.integers(0, VOCAB - 1, (TIME, BATCH))  # the last word left out: see case()
    targets = rng.integers(0, VOCAB, (TIME, BATCH))
    search_tokens = rng.integers(0, VOCAB - 1, (TIME - 1, BATCH))
    search_targets = rng.integers(0, VOCAB, (TIME - 1, BATCH))
    hidden = rng.normal(0.0, 0.5, (BATCH, UNITS))
    search_hidden = rng.normal(0.0, 0.5, (BATCH, UNITS))
    model.train()
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    next_hidden, _ = architect.step([t(hidden)[None]], t(tokens), t(targets).reshape(-1),
                                    [t(search_hidden)[None]], t(search_tokens),
                                    t(search_targets).reshape(-1), optimizer, True)
    bn = model.rnns[0].bn
    out = {"alpha": alpha, "tokens": tokens, "targets": targets,
           "search_tokens": search_tokens, "search_targets": search_targets,
           "hidden": hidden, "search_hidden": search_hidden, "eta": eta,
           "d_alpha": model.weights.grad.detach().numpy().copy(),
           "stepped_alpha": model.weights.detach().numpy().copy(),
           "last_search_hidden": next_hidden[0][0].detach().numpy(),
           "moving_mean": bn.running_mean.numpy().copy(),
           "moving_variance": bn.running_var.numpy().copy()}
    # the first-order gradient on the same search segment, for how far apart they are
    first = search.RNNModelSearch.new(model)
    with torch.no_grad():
        first.weights.copy_(torch.from_numpy(alpha))
        for (_, a), (_, b) in zip(first.named_parameters(), model.named_parameters()):
            a.copy_(b)
    first.train()
    loss, _ = first._loss([t(search_hidden)[None]], t(search_tokens),
                          t(search_targets).reshape(-1))
    loss.backward()
    out["d_alpha_first_order"] = first.weights.grad.detach().numpy().copy()
    out.update({f"w.{n}": v for n, v in values.items()})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=pathlib.Path, help="the authors' src/ folder")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).parent.parent / "tests" / "data"
                        / "recurrent_reference.npz")
    parser.add_argument("--eval-out", type=pathlib.Path, default=None,
                        help="also write the evaluation model's and ASGD's numbers here")
    parser.add_argument("--unrolled-out", type=pathlib.Path, default=None,
                        help="also write the unrolled α step's numbers here")
    args = parser.parse_args(argv)
    torch, search, model_rnn, genotypes = import_reference(args.src)
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)  # the truth in float64; kdarts runs float32
    arrays = {}
    for seed, crb in enumerate((True, False)):
        name = "crb" if crb else "softmax"
        for key, value in case(torch, search, crb, seed).items():
            value = np.asarray(value)
            # stored in float32: the float64 truth rounded once (half an ulp), far inside
            # the test's tolerance for kdarts's float32 computation, in half the file
            if value.dtype == np.float64:
                value = value.astype(np.float32)
            arrays[f"{name}.{key}"] = value
    counts = parameter_counts(torch, search, model_rnn, genotypes)
    arrays.update({f"count.{k}": np.asarray(v) for k, v in counts.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(arrays)} arrays; counts {counts}")
    if args.eval_out is not None:
        # kept in float64: the ASGD and gradient checks compare float64 arithmetic too
        arrays = {f"eval.{k}": np.asarray(v) for k, v in
                  eval_case(torch, model_rnn, genotypes).items()}
        arrays.update({f"asgd.{k}": np.asarray(v) for k, v in asgd_case(torch).items()})
        arrays["count.eval_850_darts_v2"] = np.asarray(counts["eval_850_darts_v2"])
        np.savez_compressed(args.eval_out, **arrays)
        print(f"wrote {args.eval_out}: {len(arrays)} arrays")
    if args.unrolled_out is not None:
        write_unrolled(torch, search, args.unrolled_out)


def write_unrolled(torch, search, out: pathlib.Path) -> None:
    """The unrolled α step's numbers for both activations, in float32 (as ``--out``)."""
    import architect_rnn

    arrays = {}
    for seed, crb in enumerate((True, False)):
        with contextlib.redirect_stdout(io.StringIO()):
            numbers = unrolled_case(torch, search, architect_rnn, crb, seed)
        for key, value in numbers.items():
            value = np.asarray(value)
            arrays[f"{'crb' if crb else 'softmax'}.{key}"] = (
                value.astype(np.float32) if value.dtype == np.float64 else value)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}: {len(arrays)} arrays")


if __name__ == "__main__":
    main()
