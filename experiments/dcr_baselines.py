"""The DCR analogue's generation time and simple baselines, as quoted in docs/dcr.md.

Generates the default data set into a fresh cache folder (timed), reads it back (timed), and
fits the training mean, linear least squares and quadratic least squares on z-scored inputs;
reports relative errors on the test split in physical units (global, per sample) and the global
error of the centred outputs. Writes experiments/results/dcr_baselines.json.

    python experiments/dcr_baselines.py
"""

import json
import os
import pathlib
import tempfile
import time

import numpy as np

import jaxode


def errors(p, y, centre):
    d = p - y
    return dict(
        global_=float(np.linalg.norm(d) / np.linalg.norm(y)),
        per_sample=float(np.mean(np.linalg.norm(d, axis=1) / np.linalg.norm(y, axis=1))),
        global_centred=float(np.linalg.norm(d) / np.linalg.norm(y - centre)),
    )


def quadratic(z):
    pairs = [z[:, i] * z[:, j] for i in range(z.shape[1]) for j in range(i, z.shape[1])]
    return np.column_stack([np.ones(len(z)), z, *pairs])


def main():
    with tempfile.TemporaryDirectory(prefix="jaxode-dcr-") as folder:
        os.environ["JAXODE_DATA_CACHE"] = folder
        tic = time.perf_counter()
        data = jaxode.load_dcr(progress=False)
        generate = time.perf_counter() - tic
        tic = time.perf_counter()
        jaxode.load_dcr(progress=False)
        cached = time.perf_counter() - tic
    x, y = data.x, data.y
    tr, te = data.splits["train"], data.splits["test"]
    mu, sd = x[tr].mean(0), x[tr].std(0)
    z = (x - mu) / sd
    centre = y[tr].mean(0)
    rows = {"training mean": errors(np.broadcast_to(centre, y[te].shape), y[te], centre)}
    for name, features in (
        ("linear least squares", lambda z: np.column_stack([np.ones(len(z)), z])),
        ("quadratic least squares", quadratic),
    ):
        coef, *_ = np.linalg.lstsq(features(z[tr]), y[tr], rcond=None)
        rows[name] = errors(features(z[te]) @ coef, y[te], centre)
    out = dict(
        generate_s=generate,
        cached_read_s=cached,
        load_average=os.getloadavg(),
        samples=len(x),
        outputs=y.shape[1],
        baselines=rows,
    )
    for name, r in rows.items():
        print(
            f"{name:26s} global {r['global_']:.4f}  per-sample {r['per_sample']:.4f}  "
            f"centred {r['global_centred']:.3f}"
        )
    print(f"generation {generate:.1f} s, cached read {cached:.2f} s")
    path = pathlib.Path(__file__).parent / "results" / "dcr_baselines.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
