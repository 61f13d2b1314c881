"""A progress bar: tqdm when installed, otherwise one status line per evaluation."""

import sys
import time


class _Plain:
    def __init__(self, total: int, initial: int, elapsed: float = 0.0):
        self.total, self.n, self.start = total, initial, time.perf_counter() - elapsed
        self.postfix = ""

    def update(self, count: int) -> None:
        self.n += count

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text
        elapsed = time.perf_counter() - self.start
        print(f"step {self.n}/{self.total} [{elapsed:.0f}s] {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Silent(_Plain):
    def set_postfix_str(self, text: str) -> None:
        self.postfix = text


def progress_bar(total: int, initial: int, enabled: bool, elapsed: float = 0.0):
    """A bar with `update(n)`, `set_postfix_str(s)` and `close()`; `elapsed` seconds already
    spent (a resumed run) keep its timer and rate going from where they were."""
    if not enabled:
        return _Silent(total, initial, elapsed)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(total, initial, elapsed)
    bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)
    bar.start_t -= elapsed
    return bar
