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

It needs PyTorch and numpy only (not kdarts, not TensorFlow), in an environment of
its own:

    python -m venv torchenv && torchenv/bin/pip install torch numpy
    git --git-dir=<DARTS-PRIME mirror> archive HEAD src | tar -x -C checkout/
    torchenv/bin/python tools/reference_rnn.py checkout/src
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


def case(torch, search, crb: bool, seed: int) -> dict:
    """One activation's numbers; keys without the activation's prefix."""
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    model = search.RNNModelSearch(crb, RHO, 1.0, "prox", EPOCHS, VOCAB, UNITS, UNITS, UNITS,
                                  0.0, 0.0, 0.0, 0.0, 0.0)
    model.clock = CLOCK
    cell = model.rnns[0]
    values = {
        "embedding": rng.uniform(-0.5, 0.5, (VOCAB, UNITS)),
        "decoder_bias": rng.uniform(-0.1, 0.1, VOCAB),
        "w0": rng.uniform(-0.3, 0.3, (2 * UNITS, 2 * UNITS)),
        "node_kernels": rng.uniform(-0.3, 0.3, (8, UNITS, 2 * UNITS)),
    }
    ops = model.weights.shape[1]
    # α away from crb's clip points, so both sides take the same (interior) gradient
    alpha = rng.uniform(0.05, 0.6, (36, ops)) if crb else rng.normal(0.0, 0.5, (36, ops))
    with torch.no_grad():
        for name, param in weights_of(model).items():
            if name == "node_kernels":
                for p, v in zip(param, values[name]):
                    p.copy_(torch.from_numpy(v))
            else:
                param.copy_(torch.from_numpy(values[name]))
        model.weights.copy_(torch.from_numpy(alpha))
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=pathlib.Path, help="the authors' src/ folder")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).parent.parent / "tests" / "data"
                        / "recurrent_reference.npz")
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


if __name__ == "__main__":
    main()
