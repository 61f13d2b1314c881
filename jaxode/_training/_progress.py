"""A progress bar: tqdm when installed, otherwise one status line per evaluation."""

import sys
import time


class _Plain:
    def __init__(self, total: int, initial: int):
        self.total, self.n, self.start = total, initial, time.perf_counter()
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


def progress_bar(total: int, initial: int, enabled: bool):
    """A bar with `update(n)`, `set_postfix_str(s)` and `close()`."""
    if not enabled:
        return _Silent(total, initial)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(total, initial)
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr)
