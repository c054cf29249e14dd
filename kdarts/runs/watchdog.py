"""Ctrl-C: what a run has kept so far, and a watchdog that acts on it when TensorFlow
holds the interpreter."""

from __future__ import annotations

import os
import signal
import threading


class InterruptNote:
    """What the running run has kept so far and how to continue it: the text an
    interruption reports. A run updates it as it goes (after each checkpoint);
    :class:`SigintWatchdog` and :class:`~kdarts.runs.RunInterrupted` read it."""

    def __init__(self, text: str = "nothing was written"):
        self.text = text

    def set(self, text: str) -> None:
        self.text = text

    def interrupted(self):
        """The :class:`~kdarts.runs.RunInterrupted` to raise for Ctrl-C now."""
        from kdarts.runs.results import RunInterrupted

        return RunInterrupted(f"interrupted; {self.text}")


#: How a stop by SIGTERM begins its message (Ctrl-C's begins "interrupted").
TERMINATED = "terminated (SIGTERM)"


class SigtermAsInterrupt:
    """While it is installed, SIGTERM raises KeyboardInterrupt in the main thread, so a
    run stops as for Ctrl-C: it says what was kept and releases its folder's lock.
    :attr:`received` tells the two apart. A second SIGTERM ends the process at once.
    Create it in the main thread; :meth:`restore` puts the previous handler back."""

    def __init__(self):
        self.received = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.received = True
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self.previous)


class SigintWatchdog:
    """Ends the process if Ctrl-C (or SIGTERM, with :class:`SigtermAsInterrupt`) is not
    handled within ``grace`` seconds.

    TensorFlow can hold the interpreter for a minute while it optimises a graph,
    and Python runs its signal handler (raising KeyboardInterrupt) only afterwards.
    This thread wakes on the signal at once (``signal.set_wakeup_fd``); if the
    main thread has not stopped within ``grace`` seconds it prints
    ``Error: interrupted; <note>`` and exits with status 130 (143 for SIGTERM). Every file kdarts
    writes is written atomically, so nothing half-written is left (a run folder's
    lock is left too: the next run takes over a lock whose process has ended).
    Create it in the main thread; pass :attr:`note` to the run; :meth:`stop` when
    the work is done.
    """

    def __init__(self, grace: float = 3.0, note: InterruptNote | None = None):
        self.grace = float(grace)
        self.note = note if note is not None else InterruptNote()
        self.done = threading.Event()
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.stderr_fd = os.dup(2)  # stays the terminal while native code's stderr is muted
        self.thread = threading.Thread(target=self._watch, daemon=True, name="kdarts-sigint")
        self.thread.start()

    def _watch(self) -> None:
        while True:
            data = os.read(self.read_fd, 64)  # the C-level handler writes here at once
            if not data or self.done.is_set():
                return
            stop = (signal.SIGTERM if signal.SIGTERM in data
                    else signal.SIGINT if signal.SIGINT in data else None)
            if stop is not None and not self.done.wait(self.grace):
                what = TERMINATED if stop == signal.SIGTERM else "interrupted"
                os.write(self.stderr_fd, f"\nError: {what}; "
                         f"{' '.join(self.note.text.split())}\n".encode())
                os._exit(143 if stop == signal.SIGTERM else 130)

    def stop(self) -> None:
        self.done.set()
        signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write_fd)  # ends the thread's read
        self.thread.join(1.0)
        os.close(self.read_fd)
        os.close(self.stderr_fd)
