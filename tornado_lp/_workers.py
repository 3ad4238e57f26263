"""Pre-forked workers for ``--processes``: the parent forks them and looks after them.

The listening sockets are bound before forking, so every worker accepts on the
same port. Each worker starts its own event loop after the fork.

Not :func:`tornado.process.fork_processes`, because its parent keeps no
handle on its children for a signal handler: SIGTERM to the parent would end
it and leave the workers serving as orphans. Here the parent forwards SIGTERM
and SIGINT to every worker and waits for them, restarts a worker that crashed
(at most ``MAX_RESTARTS`` in ``RESTART_WINDOW`` seconds, then it stops them
all), and workers stop by themselves when the parent is gone (see
:func:`tornado_lp.server.serve`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from types import FrameType

__all__ = ["supervise"]

log = logging.getLogger("tornado_lp.workers")

MAX_RESTARTS = 5
RESTART_WINDOW = 30.0  # seconds
_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def supervise(
    count: int, worker: Callable[[int], int], exited: Callable[[int], None] | None = None
) -> int:
    """Run ``worker(index)`` in ``count`` forked processes until they stop; the exit status.

    ``exited(pid)`` is called in the parent for every worker that ended (before
    a replacement starts).

    0 when every worker stopped cleanly (after SIGTERM/SIGINT to the parent),
    1 when a worker failed at the end or workers kept crashing.
    """
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False
    status = 0
    restarts: deque[float] = deque()

    def start(index: int) -> None:
        # Signals stay blocked across fork() so a child never runs the parent's handler.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _child(index, worker, previous)
            children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    for signum in _SIGNALS:
        signal.signal(signum, stop)
    for index in range(count):
        if stopping:  # a signal came while the first workers were being forked
            break
        start(index)
    while children:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, -1)
        if index < 0:
            continue
        if exited is not None:
            try:
                exited(pid)
            except Exception:
                log.exception("cleaning up after worker %d (pid %d) failed", index, pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if stopping or code == 0:
            if code != 0:
                status = 1
            continue
        what = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        now = time.monotonic()
        restarts.append(now)
        while restarts and restarts[0] < now - RESTART_WINDOW:
            restarts.popleft()
        if len(restarts) > MAX_RESTARTS:
            log.error("worker %d (pid %d) %s; %d restarts in %.0f s, stopping all workers",
                      index, pid, what, MAX_RESTARTS, RESTART_WINDOW)
            status = 1
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker %d (pid %d) %s; starting a new one", index, pid, what)
        start(index)
    return status


def _child(index: int, worker: Callable[[int], int], mask: set[int | signal.Signals]) -> None:
    """The forked worker: default signal handling, run, and never return into the parent's code."""
    code = 1
    try:
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        code = worker(index)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
