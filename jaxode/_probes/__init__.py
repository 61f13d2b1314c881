"""Implementation of `jaxode.probes`."""
