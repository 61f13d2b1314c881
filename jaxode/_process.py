"""Settings of the whole process that only a program jaxode owns may change: the command line,
and the workers a sweep's executors start. The library itself never calls them (it follows
whatever its caller chose)."""

import os

import jax
import jax.numpy as jnp


def x64_enabled() -> bool:
    """Whether JAX's 64-bit mode is on (read, not changed: the library may ask)."""
    return jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64


def set_precision(precision: str) -> None:
    """Turns JAX's 64-bit mode on for `"float64"` and off for `"float32"`."""
    jax.config.update("jax_enable_x64", precision == "float64")


def use_compilation_cache() -> None:
    """Turns on JAX's persistent compilation cache, so that a second run of the same model
    skips compilation: in $JAXODE_COMPILATION_CACHE, by default a folder under the user's
    cache directory ($XDG_CACHE_HOME or ~/.cache); JAXODE_COMPILATION_CACHE=off turns it off."""
    setting = os.environ.get("JAXODE_COMPILATION_CACHE", "")
    if setting.lower() == "off":
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    jax.config.update("jax_compilation_cache_dir", setting or os.path.join(base, "jaxode", "jax"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
