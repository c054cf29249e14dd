"""Run the authors' whole DARTS-PRIME search loop on an ``.npz`` of images (a speed reference).

    PYTHON_WITH_TORCH tools/reference_search_loop.py SRC DATA.npz OUT [their options...]

SRC is the ``src/`` folder of the authors' code (k8lion/DARTS-PRIME); their
``train_scheduled_hard_statebn.py`` (the dynamic schedule, proximity/ADMM, crb) runs
unchanged, from its ``main()``, with ``--gpu -1``. Only its surroundings are replaced:

* the data: ``DATA.npz`` (``x`` uint8 (N, H, W, 3), ``y`` int) stands in for CIFAR-10,
  normalised by its own mean and std (their transforms are CIFAR's crops and flips);
* the per-epoch plots and history files (matplotlib, pandas) are no-ops, and the
  modules only those need (torchvision, matplotlib, pandas, PIL) are stubs, so a Python
  with torch and numpy suffices. Leaving the plots out only makes their loop faster:
  a ratio against it is conservative;
* ``Tensor.cuda`` returns the tensor (their loop calls it on CPU runs too), and their
  parameter-size log line counts with ``sum`` (``np.sum`` of a generator fails on
  numpy 2);
* ``zero_grad`` leaves zeros, not ``None``, as before torch 2.0: their FI reads the
  gradient of every weight, pruned ops' included.

Their outputs (log, ``weights.pt``, ``genotype.txt``) go to ``OUT/exp/run``. Used by
``tools/bench_whole.py``; nothing of theirs is copied into kdarts.
"""

import importlib.machinery
import os
import sys
import types

import numpy as np


class _Anything:
    """Stands for any object of a stubbed module: every attribute, call or item is itself."""

    def __getattr__(self, name):
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __getitem__(self, key):
        return self

    def __setitem__(self, key, value):
        pass


def _any_public_name(attr: str):
    if attr.startswith("__"):  # inspect and pickle probe __file__, __path__, …
        raise AttributeError(attr)
    return _Anything()


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch probes find_spec
    module.__dict__.update(attrs)
    module.__getattr__ = _any_public_name  # PEP 562: any other name
    sys.modules[name] = module
    return module


class _Dataset:  # their utils subclasses CIFAR100, so the stubs must be classes
    pass


def install_stubs() -> None:
    """Modules their ``utils`` imports for plots and for datasets other than ours."""
    transforms = _stub("torchvision.transforms")
    datasets = _stub("torchvision.datasets", CIFAR10=_Dataset, CIFAR100=_Dataset)
    _stub("torchvision", transforms=transforms, datasets=datasets)
    pyplot = _stub("matplotlib.pyplot")
    _stub("matplotlib", rcParams={}, pyplot=pyplot)
    _stub("pandas")
    _stub("PIL", Image=_Anything())
    _stub("PIL.Image")


def npz_dataset(path: str):
    """A torch ``Dataset`` class over ``path``'s images, built as theirs builds CIFAR-10."""
    import torch

    with np.load(path) as data:
        x = data["x"].astype(np.float32) / 255.0
        y = data["y"].astype(np.int64)
    mean = x.mean(axis=(0, 1, 2))
    std = x.std(axis=(0, 1, 2)) + 1e-7
    images = torch.from_numpy(((x - mean) / std).transpose(0, 3, 1, 2).copy())
    labels = torch.from_numpy(y)

    class NpzImages(torch.utils.data.Dataset):
        def __init__(self, root=None, train=True, download=False, transform=None):
            pass

        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return images[i], int(labels[i])

    return NpzImages


def main(argv) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    src, data, out, *their = argv
    src, data, out = (os.path.abspath(p) for p in (src, data, out))
    os.makedirs(out, exist_ok=True)
    install_stubs()
    sys.path.insert(0, src)
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    # their FI reads every weight's .grad: zeros, as zero_grad left them before torch 2.0
    zero_grad = torch.optim.Optimizer.zero_grad
    torch.optim.Optimizer.zero_grad = lambda self, set_to_none=False: zero_grad(self, set_to_none)
    import utils  # theirs

    utils.get_dir = lambda: out + os.sep
    os.makedirs(os.path.join(out, "exp"), exist_ok=True)
    utils._data_transforms_cifar10 = lambda args: (None, None)
    for name in ("plot_loss_acc", "plot_FI", "save_file"):
        setattr(utils, name, lambda *a, **k: None)
    # their log line's np.sum over a generator is an error from numpy 2 on: the same count
    utils.count_parameters_in_MB = lambda model: sum(
        v.numel() for name, v in model.named_parameters() if "auxiliary" not in name) / 1e6
    sys.modules["torchvision.datasets"].CIFAR10 = npz_dataset(data)
    os.chdir(out)  # their exp-dir helper copies src/*.py from the working directory
    sys.argv = ["train_scheduled_hard_statebn.py", "--gpu", "-1", "--save", "run", *their]
    import train_scheduled_hard_statebn as search  # parses sys.argv, opens the log

    search.main()


if __name__ == "__main__":
    main(sys.argv[1:])
