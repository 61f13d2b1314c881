"""Advisory folder locks: one process at a time writes a run directory, a cohort's folder or a
sweep's results. The operating system releases a lock when its process dies, so a lock left by
`kill -9` is no lock at all; the lock file only says who held it last."""

import contextlib
import errno
import os
import pathlib
import socket
import sys
import time
import warnings
from collections.abc import Iterator

LOCK = ".jaxode.lock"

# Folders this process holds (resolved path -> [descriptor, depth]): taking a lock again from
# the same process (a sweep cell, then the training of that cell) nests instead of refusing.
_held: dict[str, list] = {}


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


# What a file system that cannot lock answers (NFS without lockd, Lustre without -o flock).
_NO_LOCKING = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)


def _cannot(folder: pathlib.Path, what: str, error: OSError) -> OSError:
    reason = (error.strerror or str(error)).lower()
    return type(error)(
        f"cannot lock the {what} {str(folder)!r} ({LOCK}): {reason}; make the folder writable "
        "or choose another one."
    )


def _acquire(folder: pathlib.Path, what: str, wait: float) -> tuple[int | None, bool]:
    """`(descriptor, stale)`: the descriptor holding the lock (`None` where the file system
    cannot lock), and whether a lock file a dead holder left was there."""
    path = folder / LOCK
    deadline = time.monotonic() + wait
    while True:
        stale = path.exists()
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise _cannot(folder, what, error) from None
        try:
            locked = _try_lock(descriptor)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in _NO_LOCKING:
                raise _cannot(folder, what, error) from None
            warnings.warn(
                f"the file system of {str(folder)!r} cannot lock files ({error.strerror}): "
                "jaxode cannot tell whether another process writes there too.",
                stacklevel=4,
            )
            return None, False
        if not locked:
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
    holder = f"process {os.getpid()} on {socket.gethostname()}, since {stamp}"
    try:
        os.ftruncate(descriptor, 0)
        os.write(descriptor, holder.encode())
    except OSError as error:
        _release(folder, descriptor)
        raise _cannot(folder, what, error) from None
    return descriptor, stale


def _release(folder: pathlib.Path, descriptor: int | None) -> None:
    if descriptor is None:
        return
    if _same_file(descriptor, folder / LOCK) and sys.platform != "win32":
        with contextlib.suppress(OSError):
            (folder / LOCK).unlink()
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
    """Deletes the temporary files of atomic writes a killed holder left (`.<name>.*.tmp`,
    beside the lock file it left): whoever holds the lock is the only writer, so none of them
    is in progress. A folder without such a lock file is left as it is."""
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def folder_lock(folder, what: str = "folder", wait: float = 0.0) -> Iterator[None]:
    """Holds the advisory lock of `folder` (created, with its parents, when missing) for the
    block, after removing what the interrupted writes of a killed holder left there. Nested
    use in one process is allowed; the lock file goes when the outermost block ends. On a file
    system that cannot lock, a warning says so and the block runs unlocked.

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
        descriptor, stale = _acquire(folder, what, wait)
        _held[key] = [descriptor, 1]
        if stale:
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
