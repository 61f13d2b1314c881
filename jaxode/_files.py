"""Files jaxode writes, at the floor of the package: atomic writes (a crash mid-write leaves the
previous file intact, never a corrupt one), strict JSON, CSV histories and the checkpoint
container (a JSON header and the leaves of a tree)."""

import csv
import errno
import hashlib
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
    except BaseException as error:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno is not None:
            reason = (error.strerror or str(error)).lower()
            full = error.errno in (errno.ENOSPC, errno.EDQUOT)
            remedy = "free space" if full else "make it writable"
            raise type(error)(
                f"cannot write {str(path)!r} ({len(data)} bytes): {reason}; the previous "
                f"version of the file, if any, is intact: {remedy} or choose another output "
                "location, then run the same command again."
            ) from None
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


def read_text(path, what: str, remedy: str) -> str:
    """The UTF-8 text of the user's file `path`.

    **Arguments:** `what` names the file in messages (`"--config file"`); `remedy` says what
    to do about a file that is missing or damaged.

    **Raises:** `FileNotFoundError` for a missing file; `IsADirectoryError` or `ValueError` for
    a folder or something other than a regular file; `ValueError` for text that is not UTF-8;
    `OSError` naming the file when it cannot be read.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist; {remedy}")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {str(path)!r} is a folder, not a file; {remedy}")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} is not a regular file; {remedy}")
    try:
        data = path.read_bytes()
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise type(error)(f"cannot read {what} {str(path)!r}: {reason}.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{what} {str(path)!r} is not UTF-8 text (byte {data[error.start]:#04x} at "
            f"position {error.start}); {remedy}"
        ) from None


def read_json(path, what: str, remedy: str) -> dict:
    """The JSON object in the user's file `path`.

    **Raises:** as `read_text`, and `ValueError` when the text is not a JSON object (a
    truncated or hand-damaged file)."""
    text = read_text(path, what, remedy)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{what} {str(path)!r} is damaged (not valid JSON: {error}); {remedy}"
        ) from None
    if not isinstance(values, dict):
        raise ValueError(f"{what} {str(path)!r} is damaged (not a JSON object); {remedy}")
    return values


# The container's own entry in a checkpoint's header: the size and hash of the leaves, so that
# a truncated or damaged file is told from a file of another model.
_PAYLOAD = "_payload"


def save_checkpoint(path, meta: dict, tree) -> None:
    """One file holding a JSON header `meta` and the array leaves of `tree`
    (`eqx.tree_serialise_leaves`), written atomically."""
    leaves = io.BytesIO()
    eqx.tree_serialise_leaves(leaves, tree)
    payload = leaves.getvalue()
    check = {"bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    header = json.dumps({**meta, _PAYLOAD: check}).encode("utf-8")
    data = _MAGIC + struct.pack("<Q", len(header)) + header + payload
    atomic_write_bytes(path, data)


def _split(path: pathlib.Path) -> tuple[dict, bytes]:
    """`(header, leaves)` of a checkpoint file.

    **Raises:** `ValueError` naming what is wrong when the file is not a whole jaxode
    checkpoint."""
    data = path.read_bytes()
    if not data.startswith(_MAGIC):
        raise ValueError(f"{str(path)!r} is not a jaxode checkpoint (it does not start with one).")
    start = len(_MAGIC) + 8
    if len(data) < start:
        raise ValueError(f"{str(path)!r} is damaged: truncated within its header.")
    (length,) = struct.unpack("<Q", data[len(_MAGIC) : start])
    try:
        header = json.loads(data[start : start + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise ValueError(f"{str(path)!r} is damaged: its header is truncated or not JSON.")
    payload = data[start + length :]
    check = header.pop(_PAYLOAD, None)
    if check is not None and not (
        isinstance(check, dict)
        and isinstance(check.get("bytes"), int)
        and isinstance(check.get("sha256"), str)
    ):
        raise ValueError(f"{str(path)!r} is damaged: its header's size and checksum are not.")
    if check is not None and len(payload) != check["bytes"]:
        raise ValueError(
            f"{str(path)!r} is damaged: it holds {len(payload)} of the {check['bytes']} bytes of "
            "its parameters (truncated, e.g. by a full disk or an interrupted copy)."
        )
    if check is not None and hashlib.sha256(payload).hexdigest() != check["sha256"]:
        raise ValueError(f"{str(path)!r} is damaged: its parameters do not match their checksum.")
    return header, payload


def checkpoint_meta(path) -> dict:
    """The header `meta` of a checkpoint file, without its tree.

    **Raises:** `FileNotFoundError` if missing; `ValueError` if not a whole jaxode checkpoint."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    return _split(path)[0]


def checkpoint_problem(path) -> str | None:
    """What is wrong with the checkpoint file `path` (`None`: it is whole); reads no model."""
    try:
        _split(pathlib.Path(path))
    except (OSError, ValueError) as error:
        return str(error)
    return None


def load_checkpoint(path, skeleton) -> tuple[dict, object]:
    """`(meta, tree)` from a file of `save_checkpoint`; `skeleton` gives the tree's structure.

    **Raises:** `FileNotFoundError` if missing; `ValueError` if not a jaxode checkpoint, if
    truncated or damaged, or if its structure does not match `skeleton` (e.g. a different
    model configuration).
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist.")
    meta, payload = _split(path)
    try:
        tree = eqx.tree_deserialise_leaves(io.BytesIO(payload), skeleton)
    except Exception as error:  # equinox raises several types on a structure mismatch
        raise ValueError(
            f"{path} does not match the model built from the run's configuration ({error})."
        ) from None
    return meta, tree
