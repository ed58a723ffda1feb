"""A time limit per cell that a learner's code cannot ignore (used inside and outside sandboxes).

nbclient's own limit only *interrupts* the kernel (``SIGINT``) and then keeps waiting, so a
cell that catches ``KeyboardInterrupt`` (or sits in C code that never checks for it) runs on
until the limit of the whole notebook. :func:`execute` runs one cell with nbclient's limit off
and two timers of its own: ``SIGINT`` to the kernel's process group after ``seconds``, and
``SIGKILL`` ``grace`` seconds later when the kernel has not answered. nbclient notices the dead
kernel within a second and raises ``DeadKernelError``.
"""
from __future__ import annotations

import os
import signal
import threading

#: Seconds a kernel has to answer an interrupt before it is killed.
GRACE_SECONDS: float = 10.0


def _signal_kernel(client, signum: int) -> None:
    provisioner = getattr(getattr(client, "km", None), "provisioner", None)
    process = getattr(provisioner, "process", None)
    if process is None:
        return
    pgid = getattr(provisioner, "pgid", None)
    try:
        if pgid:
            os.killpg(pgid, signum)
        else:
            os.kill(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def execute(client, cell, index: int, seconds: float | None, grace: float = GRACE_SECONDS,
            fired: threading.Event | None = None, **kwargs) -> bool:
    """``client.execute_cell(cell, index, **kwargs)`` within ``seconds`` (None: no limit).

    Returns True when the limit was reached (the cell was interrupted, or its kernel killed:
    then nbclient's ``DeadKernelError`` propagates and ``fired``, when given, is set).
    ``client.timeout`` should be ``None``.
    """
    if not seconds:
        client.execute_cell(cell, index, **kwargs)
        return False
    fired = threading.Event() if fired is None else fired
    fired.clear()

    def interrupt() -> None:
        fired.set()
        _signal_kernel(client, signal.SIGINT)

    timers = [threading.Timer(seconds, interrupt),
              threading.Timer(seconds + grace, _signal_kernel, (client, signal.SIGKILL))]
    for timer in timers:
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError:  # no thread left (the learner used up the process limit):
            break             # the notebook's own limit still stops the sandbox
    try:
        client.execute_cell(cell, index, **kwargs)
    finally:
        for timer in timers:
            timer.cancel()
    return fired.is_set()
