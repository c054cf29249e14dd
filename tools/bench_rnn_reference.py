"""Time the authors' recurrent search step (DARTS-PRIME's PyTorch code) on the CPU.

Imports ``model_search_rnn`` and ``architect_rnn`` from the authors' ``src/`` folder given
on the command line (nothing of theirs is copied) and builds their search model at the
given size with random word ids. The step is their ``train_search_rnn.py`` step: the
first-order α step (``Architect.step(..., unrolled=False)``) when ``--alpha`` is given,
then the weight step (forward, CE + slowness, backward, FI, clip 0.25, SGD lr 20).

It answers on stdout: ``ready`` after two warm-up steps, then one line of milliseconds
for every ``step`` line read on stdin, so a caller can interleave it with its own timing
(tools/bench_search.py --space recurrent does).

    torchenv/bin/python tools/bench_rnn_reference.py SRC --batch 256 --bptt 35 \\
        --units 300 --vocab 10000
"""

from __future__ import annotations

import types

# this folder is sys.path[0]
from reference_harness import parse_reference_args, reference_parser, serve_steps


def main(argv=None) -> None:
    parser = reference_parser(__doc__, "prox or darts (none)",
                              batch=256, bptt=35, units=300, vocab=10000)
    parser.add_argument("--alpha", action="store_true", help="an α step before each weight step")
    args = parse_reference_args(parser, argv)
    import torch
    import torch.nn as nn

    torch.Tensor.cuda = lambda self, *a, **k: self
    import architect_rnn
    import model_search_rnn

    torch.manual_seed(0)
    u = args.units
    model = model_search_rnn.RNNModelSearch(True, 0.1, 1.0, args.reg, 50, args.vocab, u, u, u,
                                            0.75, 0.25, 0.75, 0.2, 0.0)
    model.clock = 0.5
    hp = types.SimpleNamespace(wdecay=5e-7, clip=0.25, arch_lr=3e-3, arch_wdecay=1e-3)
    architect = architect_rnn.Architect(model, hp)
    optimizer = torch.optim.SGD(model.parameters(), lr=20.0, weight_decay=5e-7)
    gen = torch.Generator().manual_seed(0)
    ids = lambda: torch.randint(0, args.vocab, (args.bptt, args.batch), generator=gen)  # noqa
    x, y, xs, ys = ids(), ids(), ids(), ids()
    hidden, hidden_s = model.init_hidden(args.batch), model.init_hidden(args.batch)

    def step():
        nonlocal hidden, hidden_s
        model.train()
        if args.alpha:
            hidden_s, _ = architect.step(hidden, x, y.reshape(-1), hidden_s, xs,
                                         ys.reshape(-1), optimizer, False)
            hidden_s = [h.detach() for h in hidden_s]
        optimizer.zero_grad()
        log_prob, hidden, raw, _ = model(x, hidden, return_h=True)
        loss = nn.functional.nll_loss(log_prob.view(-1, log_prob.size(2)), y.reshape(-1))
        loss = loss + 1e-3 * (raw[-1][1:] - raw[-1][:-1]).pow(2).mean()
        loss.backward()
        model.track_FI()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        hidden = [h.detach() for h in hidden]

    serve_steps(step)


if __name__ == "__main__":
    main()
