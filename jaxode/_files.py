"""Files jaxode writes, at the floor of the package: atomic writes (a crash mid-write leaves the
previous file intact, never a corrupt one), strict JSON, CSV histories and the checkpoint
container (a JSON header and the leaves of a tree)."""

import csv
import io
import json
import math
import os
import pathlib
import struct
import tempfile

import equinox as eqx

_MAGIC = b"JAXODE1\n"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, flushes it to disk, then renames it
    over `path` (`os.replace` is atomic on POSIX and Windows). The file gets the permissions
    of the user's umask, as `open` would give it.

    **Raises:** `PermissionError` (or another `OSError`) naming `path` when its directory
    cannot be created or written.
    """
    path = pathlib.Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise type(error)(
            f"cannot write {str(path)!r}: {reason}; make {str(path.parent)!r} writable or "
            "choose another output location."
        ) from None
    try:
        os.fchmod(handle, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(values: dict) -> str:
    """Strict JSON text of `values`: non-finite numbers become `null` (JSON has no NaN)."""

    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(values), indent=2, allow_nan=False)


def history_csv(rows: list) -> str:
    """CSV text (LF line endings) of history rows; the columns are the union of the rows'
    keys in order of appearance, missing values left empty."""
    columns = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_history(path, rows: list) -> None:
    """Writes `history_csv(rows)` atomically (rewritten whole at every evaluation, so a killed
    run keeps every row up to its last evaluation)."""
    atomic_write_text(path, history_csv(rows))


def save_checkpoint(path, meta: dict, tree) -> None:
    """One file holding a JSON header `meta` and the array leaves of `tree`
    (`eqx.tree_serialise_leaves`), written atomically."""
    header = json.dumps(meta).encode("utf-8")
    buffer = io.BytesIO()
    buffer.write(_MAGIC)
    buffer.write(struct.pack("<Q", len(header)))
    buffer.write(header)
    eqx.tree_serialise_leaves(buffer, tree)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path, skeleton) -> tuple[dict, object]:
    """`(meta, tree)` from a file of `save_checkpoint`; `skeleton` gives the tree's structure.

    **Raises:** `FileNotFoundError` if missing; `ValueError` if not a jaxode checkpoint or its
    structure does not match `skeleton` (e.g. a different model configuration).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{path} is not a jaxode checkpoint.")
        (length,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(length).decode("utf-8"))
        try:
            tree = eqx.tree_deserialise_leaves(f, skeleton)
        except Exception as error:  # equinox raises several types on a structure mismatch
            raise ValueError(
                f"{path} does not match the model built from the run's configuration ({error})."
            ) from None
    return meta, tree
