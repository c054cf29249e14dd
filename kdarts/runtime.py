"""Process-wide TensorFlow settings that make the search fast on a CPU.

A search step is tens of thousands of small kernels. TensorFlow's default gives
every kernel all the cores (intra-op threads) *and* runs several kernels at once
(inter-op threads), so on a small CPU the threads fight over the cores. One
thread per kernel, with kernels running side by side, is faster: on 2 cores the
small search step (``tools/bench_search.py``) takes ~790 ms instead of ~880 ms.

Like any TensorFlow threading setting, it must be made before TensorFlow runs its
first op; the ``kdarts`` command line does it at start-up.

Example:
    >>> import kdarts
    >>> kdarts.set_cpu_threads(intra_op=1)   # first thing, before any model is built
"""

from __future__ import annotations


def set_cpu_threads(intra_op: int = 1, inter_op: int = 0) -> None:
    """Set TensorFlow's threads per kernel (``intra_op``) and kernels in flight (``inter_op``).

    Args:
        intra_op: threads one kernel may use; 1 suits the search's many small kernels.
            0 leaves TensorFlow's default (all cores).
        inter_op: kernels run at once; 0 is TensorFlow's default (one per core).

    Raises:
        ValueError: a negative count.
        RuntimeError: TensorFlow has already run ops with other settings (it fixes its
            thread pools on first use); call this first thing in the process.
    """
    import tensorflow as tf

    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if int(value) < 0:
            raise ValueError(f"set_cpu_threads: {name} must be >= 0, got {value}")
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads() == int(intra_op)
            and threading.get_inter_op_parallelism_threads() == int(inter_op)):
        return  # already so (TF's setters refuse even a no-op change once running)
    try:
        threading.set_intra_op_parallelism_threads(int(intra_op))
        threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        raise RuntimeError(
            f"set_cpu_threads(intra_op={intra_op}, inter_op={inter_op}): TensorFlow is "
            "already running with intra_op="
            f"{threading.get_intra_op_parallelism_threads()}, inter_op="
            f"{threading.get_inter_op_parallelism_threads()} and cannot change its threads "
            "now; call it first thing in the process, before any model or tensor is "
            "created") from None


__all__ = ["set_cpu_threads"]
