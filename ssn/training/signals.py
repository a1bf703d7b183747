"""How training stops: Ctrl-C and SIGTERM end a run with a snapshot, never inside one.

:func:`catch_stop_signals` turns both signals into ``KeyboardInterrupt`` for the
training loop; :func:`stop_signals_deferred` holds them while a snapshot is
being written, so that a stop never leaves half a snapshot.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def interrupt_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def catch_stop_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both end training with a snapshot.

    SIGINT is set explicitly: a process started in the background by a
    non-interactive shell inherits it ignored.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt_on_signal)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda number, frame: received.append(number))
                for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]}")
