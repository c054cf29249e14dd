"""Time the authors' image search step (DARTS-PRIME's PyTorch code) on the CPU.

The authors' search step as the shared reference timing script takes it (their ``Architect.step``, then the weight
step: forward, CE, backward, FI, clip 5, SGD, ``mask_alphas``), with ops pruned first:
``--keep`` gives the crb masks (JSON, normal then reduce, 1 = alive), and each pruned α is
set to 0 and masked as their ``mask_alphas`` does, so their ``MixedOp.forward`` skips it
(``if w > 0.0``). Imports ``model_admm_hard_statebn`` and ``architect`` from the authors'
``src/`` folder given on the command line; nothing of theirs is copied.

It speaks :func:`reference_harness.serve_steps`'s protocol (``ready`` then one line of
milliseconds per ``step`` request), so tools/bench_search.py --reference-src interleaves it
with its own timing.

    torchenv/bin/python tools/bench_cnn_reference.py SRC --channels 8 --layers 5 \\
        --size 16 --batch 32
"""

from __future__ import annotations

import json
import types

# this folder is sys.path[0]
from reference_harness import parse_reference_args, reference_parser, serve_steps, stub_torchvision


def main(argv=None) -> None:
    parser = reference_parser(__doc__, "prox, admm or darts (none)",
                              channels=8, layers=5, size=16, batch=32)
    parser.add_argument("--keep", help="crb masks to prune to first: JSON [normal, reduce]")
    args = parse_reference_args(parser, argv)
    stub_torchvision()
    import torch
    import torch.nn as nn

    torch.Tensor.cuda = lambda self, *a, **k: self  # CPU run
    import model_admm_hard_statebn as model_module
    from architect import Architect

    torch.manual_seed(0)
    criterion = nn.CrossEntropyLoss()
    net = model_module.Network(args.channels, 10, args.layers, criterion, 0.1, True, 50, -1,
                               ewma=0.2, reg=args.reg)
    hp = types.SimpleNamespace(momentum=0.9, weight_decay=3e-4, arch_learning_rate=3e-4,
                               arch_weight_decay=1e-3)
    architect = Architect(net, hp)
    optimizer = torch.optim.SGD(net.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    if args.keep:
        with torch.no_grad():
            for alpha, keep in zip((net.alphas_normal, net.alphas_reduce),
                                   json.loads(args.keep)):
                alpha.mul_(torch.tensor(keep, dtype=alpha.dtype))  # pruned: 0 …
        net.mask_alphas()  # … then masked for good, as their prune does at α ≤ 0
    for p in net.parameters():  # their FI sums every weight's grad: an op pruned before
        p.grad = torch.zeros_like(p)  # it ever ran would have none (their runs prune later)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))

    def step():
        architect.step(x, y)
        optimizer.zero_grad(set_to_none=False)  # their FI tracking needs zero grads
        loss = criterion(net(x), y)
        loss.backward()
        net.track_FI()
        nn.utils.clip_grad_norm_(net.parameters(), 5)
        optimizer.step()
        net.mask_alphas()

    def pruned() -> int:
        return int(sum(float((1 - m).sum()) for m in net._arch_mask))

    serve_steps(step, pruned)


if __name__ == "__main__":
    main()
