"""The installed version of jaxode."""

import importlib.metadata

try:
    __version__ = importlib.metadata.version("jaxode")
except importlib.metadata.PackageNotFoundError:  # imported from a source tree never installed
    __version__ = "unknown"
