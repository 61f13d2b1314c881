"""Advisory folder locks: one process at a time writes a run directory, a cohort's folder or a
sweep's results. The operating system releases a lock when its process dies, so a lock left by
`kill -9` is no lock at all; the lock file only says who held it last."""

import contextlib
import os
import pathlib
import socket
import sys
import time
from collections.abc import Iterator

LOCK = ".jaxode.lock"

# Folders this process holds (resolved path -> [descriptor, depth]): taking a lock again from
# the same process (a sweep cell, then the training of that cell) nests instead of refusing.
_held: dict[str, list[int]] = {}


class FolderInUse(OSError):
    """Another process holds the folder's lock."""


def _try_lock(descriptor: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _holder(path: pathlib.Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return "another process"
    return text or "another process"


def _same_file(descriptor: int, path: pathlib.Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _acquire(folder: pathlib.Path, what: str, wait: float) -> int:
    path = folder / LOCK
    deadline = time.monotonic() + wait
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(descriptor):
            os.close(descriptor)
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise FolderInUse(
                f"{what} {str(folder)!r} is in use by {_holder(path)}; wait for that process "
                "to finish (or stop it) and run the command again, or choose another folder."
            )
        # Its previous holder may have removed the file between our open and our lock: the
        # lock is then on a file nobody else can see, so take the one at the path instead.
        if _same_file(descriptor, path):
            break
        os.close(descriptor)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"process {os.getpid()} on {socket.gethostname()}, since {stamp}".encode())
    return descriptor


def _release(folder: pathlib.Path, descriptor: int) -> None:
    if _same_file(descriptor, folder / LOCK) and sys.platform != "win32":
        (folder / LOCK).unlink(missing_ok=True)
    os.close(descriptor)


def _make_folder(folder: pathlib.Path, what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{str(folder)!r} is a file; choose a folder for the {what}.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        file = next((p for p in folder.parents if p.is_file()), folder.parent)
        raise NotADirectoryError(
            f"cannot create the {what} {str(folder)!r}: {str(file)!r} is a file, not a "
            "folder; choose another location."
        ) from None
    except OSError as error:
        reason = (error.strerror or str(error)).lower()
        raise type(error)(
            f"cannot create the {what} {str(folder)!r}: {reason}; choose another location."
        ) from None


def _remove_partial_writes(folder: pathlib.Path) -> None:
    """Deletes the temporary files of atomic writes a killed process left (`.<name>.*.tmp`):
    whoever holds the lock is the only writer, so none of them is in progress."""
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def folder_lock(folder, what: str = "folder", wait: float = 0.0) -> Iterator[None]:
    """Holds the advisory lock of `folder` (created, with its parents, when missing) for the
    block, after removing what interrupted writes left there. Nested use in one process is
    allowed; the lock file goes when the outermost block ends.

    **Arguments:** `folder`; `what` names it in messages (`"run directory"`, `"sweep"`);
    `wait`: seconds to wait for another holder (0: refuse at once; for locks held briefly).

    **Raises:** `FolderInUse` naming the process that holds the lock; `FileExistsError` when
    `folder` is a file; `NotADirectoryError` when a parent is a file; `OSError` naming the
    folder when it cannot be created.
    """
    folder = pathlib.Path(folder)
    _make_folder(folder, what)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key][1] += 1
    else:
        _held[key] = [_acquire(folder, what, wait), 1]
        _remove_partial_writes(folder)
    try:
        yield
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            _release(folder, _held.pop(key)[0])


def without_lock(folder: pathlib.Path) -> list[pathlib.Path]:
    """The entries of `folder` other than its lock file."""
    return [p for p in folder.iterdir() if p.name != LOCK]
