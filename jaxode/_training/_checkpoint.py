"""Atomic files: a crash mid-write leaves the previous file intact, never a corrupt one."""

import io
import json
import os
import pathlib
import struct
import tempfile

import equinox as eqx

_MAGIC = b"JAXODE1\n"


def atomic_write_bytes(path, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, flushes it to disk, then renames it
    over `path` (`os.replace` is atomic on POSIX and Windows)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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
