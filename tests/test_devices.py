"""Cohorts sharded over devices: 4 CPU devices in one process, and 2 processes joined by
`jax.distributed` (CPU collectives through gloo), give the single-device results."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Trains a cohort of 4 small ResNets (float64) and prints its parameters as JSON: on every
# device of this process (`DEVICES`), both sharded paths, or on one device.
_COHORT = """
import json, os, sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", int(os.environ["CPU_DEVICES"]))
if os.environ.get("JAXODE_COMPILATION_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["JAXODE_COMPILATION_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
if os.environ.get("PROCESS_ID"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(os.environ["COORDINATOR"], 2, int(os.environ["PROCESS_ID"]))
import equinox as eqx, numpy as np, optax
import jaxode

def model(seed):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    field = jaxode.MLPField(3, 5, jaxode.LegendreBasis(2), key=k1)
    return jaxode.Surrogate(2, 2, jaxode.ResNet(field, 1.0, 4), key=k2)

rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (40, 2))
y = np.stack([np.sin(2 * x[:, 0]) * x[:, 1], np.cos(x[:, 0] + x[:, 1])], axis=1)

def run(devices, shard_map):
    results = jaxode.fit_cohort(
        [model(s) for s in range(4)], (x[:32], y[:32]),
        optax.inject_hyperparams(optax.adam)(learning_rate=1e-2),
        keys=[jax.random.PRNGKey(10 + s) for s in range(4)], val=(x[32:], y[32:]),
        hyperparameters={"learning_rate": [1e-2, 2e-2, 5e-3, 1e-2]},
        steps=12, batch_size=8, eval_every=4, count_evaluations=False,
        devices=devices, shard_map=shard_map)
    return [[np.asarray(a).ravel().tolist() for a in jax.tree_util.tree_leaves(
        eqx.filter(r.model, eqx.is_inexact_array))] for r in results]

out = {"devices": len(jax.devices()), "local": len(jax.local_devices())}
for name, devices, shard_map in json.loads(os.environ["RUNS"]):
    out[name] = run(jax.devices() if devices == "all" else devices, shard_map)
if os.environ.get("PROCESS_ID") != "1":
    try:
        jaxode.fit_cohort([model(0)] * 3, (x, y), optax.adam(1e-2),
                          keys=[jax.random.PRNGKey(0)] * 3,
                          steps=1, batch_size=8, devices=jax.devices())
    except ValueError as error:
        out["error"] = str(error)
    try:
        jaxode.fit_cohort([model(0)] * 8, (x, y), optax.adam(1e-2),
                          keys=[jax.random.PRNGKey(0)] * 8,
                          steps=1, batch_size=8, devices=8)
    except ValueError as error:
        out["count_error"] = str(error)
    node = jaxode.Surrogate(2, 2, jaxode.NeuralODE(jaxode.MLPField(3, 5, jaxode.LegendreBasis(2),
                            key=jax.random.PRNGKey(0)), 1.0), key=jax.random.PRNGKey(1))
    try:
        jaxode.fit_cohort([node] * 4, (x, y), optax.adam(1e-2), keys=[jax.random.PRNGKey(0)] * 4,
                          steps=1, batch_size=8, devices=jax.devices(), shard_map=True)
    except ValueError as error:
        out["node_error"] = str(error)
print("RESULT" + json.dumps(out))
"""


def _python(env: dict, runs: list) -> subprocess.Popen:
    environment = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
        "RUNS": json.dumps(runs),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_COHORT)],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    [line] = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    return json.loads(line[len("RESULT") :])


def _assert_same(one, other):
    for member_a, member_b in zip(one, other, strict=True):
        for a, b in zip(member_a, member_b, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_cohort_sharded_over_4_devices_or_2_processes_equals_the_single_device_run():
    # One process with 4 CPU devices: both sharded paths, and the single-device run (the
    # reference of both parts of this test: it is the same program wherever it runs).
    runs = [["one", None, True], ["shard_map", "all", True], ["compiler", "all", False]]
    out = _result(_python({"CPU_DEVICES": "4"}, runs))
    assert out["devices"] == 4
    _assert_same(out["one"], out["shard_map"])
    _assert_same(out["one"], out["compiler"])
    assert "3 members cannot be split evenly over 4 devices" in out["error"]
    assert "Diffrax issue 765" in out["node_error"]
    assert "`devices`=8, but 4 devices are available" in out["count_error"]

    # Two processes of 2 CPU devices each, joined by jax.distributed: the cohort split over
    # both processes' devices.
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    env = {"CPU_DEVICES": "2", "COORDINATOR": f"localhost:{port}"}
    runs = [["shard_map", "all", True]]
    processes = [_python({**env, "PROCESS_ID": str(i)}, runs) for i in range(2)]
    first, second = (_result(p) for p in processes)
    assert first["devices"] == second["devices"] == 4 and first["local"] == 2
    _assert_same(first["shard_map"], second["shard_map"])
    _assert_same(first["shard_map"], out["one"])
