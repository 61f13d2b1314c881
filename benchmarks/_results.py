"""What every benchmark does with its result: describe where it ran, write it as JSON,
atomically, and say where."""

import json
import os
import platform
import sys


def run_context(benchmark: str, load_before) -> dict:
    """The fields every result file opens with: the command, the versions, the device and the
    machine's load average before and (at this call) after the measurement."""
    import jax

    return {
        "benchmark": benchmark,
        "command": " ".join([sys.executable] + sys.argv),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0]),
        "devices": len(jax.devices()),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average": os.getloadavg(),
    }


def write_json(path: str, result: dict) -> None:
    """Writes `result` to `path` (its folder created) through a temporary file, so that an
    interrupted benchmark never leaves a half-written result."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
