"""Where a result came from: the jaxode version and, for a jaxode imported from a git checkout,
the commit, whether the library's files (the package and pyproject.toml) were clean, and a hash
of their changes when they were not."""

import functools
import hashlib
import pathlib
import platform
import subprocess

from ._version import __version__

PACKAGE = pathlib.Path(__file__).resolve().parent
# The files whose state decides the library's behaviour.
LIBRARY = (PACKAGE, PACKAGE.parent / "pyproject.toml")
# What a run's metrics.json and a sweep's results.csv record of the process that finished it.
PROVENANCE_FIELDS = ("jaxode_version", "git_commit", "git_clean", "git_diff_sha256")


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def provenance() -> dict:
    """`{"jaxode_version", "git_commit", "git_clean", "git_diff_sha256", "python", "jax"}` of
    this process (computed once): `git_commit` is `None` (and so are the other two) when jaxode
    does not run from a git checkout of itself; `git_diff_sha256` (the SHA-256 of the
    library's diff against the commit and of its untracked files) is `None` when clean."""
    import jax

    out = {
        "jaxode_version": __version__,
        "git_commit": None,
        "git_clean": None,
        "git_diff_sha256": None,
        "python": platform.python_version(),
        "jax": jax.__version__,
    }
    top = _git("rev-parse", "--show-toplevel")
    if top is None or pathlib.Path(top.strip()).resolve() != PACKAGE.parent:
        return out
    paths = ["--", *(str(p) for p in LIBRARY)]
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", *paths)
    if commit is None or status is None:
        return out
    out["git_commit"], out["git_clean"] = commit.strip(), not status.strip()
    if status.strip():
        digest = hashlib.sha256((_git("diff", "HEAD", *paths) or "").encode())
        untracked = _git("ls-files", "--others", "--exclude-standard", *paths) or ""
        for name in sorted(untracked.split()):
            path = PACKAGE.parent / name
            digest.update(name.encode())
            if path.is_file():
                digest.update(path.read_bytes())
        out["git_diff_sha256"] = digest.hexdigest()
    return out
