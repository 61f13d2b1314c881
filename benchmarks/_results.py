"""What every benchmark does with its result: write it as JSON, atomically, and say where."""

import json
import os


def write_json(path: str, result: dict) -> None:
    """Writes `result` to `path` (its folder created) through a temporary file, so that an
    interrupted benchmark never leaves a half-written result."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)
    print(f"wrote {path}")
