"""The memory limit jaxode checks sizes against before it allocates: $JAXODE_MEMORY_LIMIT, by
default 80 % of the machine's physical memory. The readers of data files refuse an array
larger than it, and training refuses a cohort whose estimate exceeds it, with a message that
says how to raise it (at the floor of the package: data sets and training both read it)."""

import math
import os
import re

MEMORY_LIMIT_VARIABLE = "JAXODE_MEMORY_LIMIT"
DEFAULT_MEMORY_FRACTION = 0.8
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]\+?(\d+))?\s*([a-zA-Z]*)\s*")


def format_bytes(size: float) -> str:
    """`size` bytes as text in decimal units, three significant digits: `"3.2 GB"`,
    `"512 MB"`, `"900 B"`."""
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{int(size)} B"


def parse_size(text: str, name: str = MEMORY_LIMIT_VARIABLE) -> int | None:
    """A memory size from text: a number of bytes (`"500000000"`, `"5e8"`), or a number with
    a unit (`"16GB"`, `"500MB"`, `"2GiB"`, any case; kB/MB/GB/TB are powers of 1000,
    KiB/MiB/GiB/TiB powers of 1024); `"none"` or `"off"` for no limit.

    **Arguments:**

    - `text`: the size; `name`: what it is, for the message (the environment variable).

    **Returns:** the size in bytes (an integer > 0), or `None` for no limit.

    **Raises:** `ValueError` naming `name` and `text` for anything else (a size <= 0 too).
    """
    if text.strip().lower() in ("none", "off"):
        return None
    match = _SIZE.fullmatch(text)
    unit = _UNITS.get(match[3].lower()) if match else None
    if match is None or unit is None:
        raise ValueError(
            f"{name}={text!r} is not a memory size; write a number of bytes or a number with a "
            "unit (e.g. 16GB, 500MB, 2GiB), or 'none' for no limit."
        )
    exponent = int(match[2] or 0)
    size = float(match[1]) * 10.0**exponent * unit if exponent < 400 else float("inf")
    if not 1 <= size < 2**63:
        raise ValueError(
            f"{name}={text!r} is not a usable memory size; give at least 1 byte and less than "
            "2**63 bytes (e.g. 16GB), or 'none' for no limit."
        )
    return int(size)


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (`os.sysconf`), or `None` where the system does
    not say."""
    try:
        size = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return size if size > 0 else None


def memory_limit() -> tuple[int | None, str]:
    """The most memory jaxode lets one array, or one training cohort, take: $JAXODE_MEMORY_LIMIT
    (see `parse_size`), by default 80 % of the machine's physical memory (no limit where the
    system does not say how much it has).

    **Returns:** `(bytes or None for no limit, where the limit comes from)`, the second for
    messages, e.g. `"80 % of this machine's 16.8 GB"` or `"JAXODE_MEMORY_LIMIT=16GB"`.

    **Raises:** `ValueError` naming the variable when its text is not a memory size.
    """
    text = os.environ.get(MEMORY_LIMIT_VARIABLE)
    if text is not None and text.strip():
        return parse_size(text), f"{MEMORY_LIMIT_VARIABLE}={text.strip()}"
    total = physical_memory()
    if total is None:
        return None, "no limit (the system does not report its memory)"
    percent = round(100 * DEFAULT_MEMORY_FRACTION)
    return int(DEFAULT_MEMORY_FRACTION * total), (
        f"{percent} % of this machine's {format_bytes(total)} of memory"
    )


def raise_the_limit(needed: float) -> str:
    """The advice of a message that refuses `needed` bytes: how to raise the limit."""
    suggestion = max(1, math.ceil(needed / 1e9 * 1.25))
    return (
        f"raise the limit with the environment variable {MEMORY_LIMIT_VARIABLE} (e.g. "
        f"{MEMORY_LIMIT_VARIABLE}={suggestion}GB, or 'none' for no limit)"
    )
