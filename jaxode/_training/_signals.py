"""Interrupts held back while a program with host callbacks runs."""

import contextlib
import os
import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held():
    """Holds SIGINT and SIGTERM back until the block ends, then delivers them to the handlers
    that were installed before it. An exception raised by a signal handler inside a JAX host
    callback reaches the caller as a `JaxRuntimeError`, not as the `KeyboardInterrupt` a
    training loop stops on, so programs with callbacks (evaluation counting) run inside this.
    Outside the main thread, where handlers cannot be changed, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {
        sig: signal.signal(sig, lambda number, frame: caught.append(number)) for sig in _SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for number in dict.fromkeys(caught):
            handler = previous[number]
            if callable(handler):
                handler(number, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), number)
