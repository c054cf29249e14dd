"""Test-wide settings: quiet TensorFlow's C++ logging before it is imported, and run
TensorFlow with the threads the ``kdarts`` command line uses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import kdarts  # noqa: E402

kdarts.set_cpu_threads(intra_op=1)
