"""Run directories and cohort directories: the names of the files a run writes (those the
training engine writes itself, `checkpoint.eqx` and `history.csv`, come from `_members`),
the rule of which runs may train together, and the reading and writing of what a run stores
beside its model (configuration, normalisation, metrics). The training command, sweeps,
`jaxode runs` and reports all go through here."""

import dataclasses
import hashlib
import json
import pathlib

from .._datasets import Affine, Dataset, TrajectoryData
from .._files import atomic_write_text, json_text
from ._config import RunConfig
from ._members import CHECKPOINT, HISTORY

CONFIG = "config.toml"
NORMALISATION = "normalisation.json"
MODEL = "model.eqx"
METRICS = "metrics.json"
PLOT = "loss.png"
EVALUATION = "evaluation.json"
# A sweep cell whose training raised keeps the traceback here.
ERROR = "error.txt"
# Any of these marks a folder as a run directory.
RUN_FILES = (CONFIG, NORMALISATION, CHECKPOINT, HISTORY, MODEL, METRICS)
COHORT, SUMMARY = "cohort.json", "summary.json"

# The fields in which the members of one cohort may differ: runs equal in every other field
# train as one compiled program.
COHORT_FIELDS = (("train", "seed"),)


def cohort_key(config: RunConfig) -> str:
    """The identity of the cohort `config` belongs to: a hash of its configuration without
    the fields in which cohort members may differ (`COHORT_FIELDS`)."""
    values = config.to_dict()
    for section, field in COHORT_FIELDS:
        values[section][field] = None
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def check_cohort(configs: list[RunConfig]) -> None:
    """**Raises:** `ValueError` naming the fields in which a member differs from member 0
    other than `COHORT_FIELDS`."""
    first = configs[0].to_dict()
    for k, config in enumerate(configs[1:], start=1):
        differing = [
            f"{section}.{key}"
            for section, entries in config.to_dict().items()
            for key, value in entries.items()
            if first[section][key] != value and (section, key) not in COHORT_FIELDS
        ]
        if differing:
            allowed = ", ".join(f"{s}.{k}" for s, k in COHORT_FIELDS)
            raise ValueError(
                f"cohort member {k} differs from member 0 in {', '.join(differing)}; members "
                f"may differ only in {allowed}: train the others as separate runs or cohorts."
            )


def with_seed(config: RunConfig, seed: int) -> RunConfig:
    """`config` as the cohort member of `seed`."""
    return config.replace("train", seed=seed)


def _differences(given: RunConfig, stored: RunConfig) -> list[str]:
    one, other = given.to_dict(), stored.to_dict()
    return [
        f"{section}.{key}: {other[section][key]!r} stored, {value!r} given"
        for section, values in one.items()
        for key, value in values.items()
        if other[section][key] != value
    ]


@dataclasses.dataclass(frozen=True)
class RunDir:
    """One run's directory: where each of its files lives, and what it stores beside the
    trained parameters (see `train` for what a run writes)."""

    path: pathlib.Path

    def __init__(self, path):
        object.__setattr__(self, "path", pathlib.Path(path))

    def __truediv__(self, name: str) -> pathlib.Path:
        return self.path / name

    def holds_run(self) -> bool:
        return (self / CONFIG).is_file()

    def check_new(self) -> None:
        """**Raises:** `FileExistsError` unless the directory is new or empty."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{str(path)!r} is a file; choose a directory for the run.")
        if (path / CONFIG).exists():
            raise FileExistsError(
                f"{str(path)!r} already holds a run; pass --resume to continue it or choose "
                "another --out."
            )
        if path.is_dir() and any(path.iterdir()):
            raise FileExistsError(
                f"{str(path)!r} exists and holds files but no run; choose an empty or new "
                "directory (--out)."
            )

    def start(self, config: RunConfig, data: Dataset | TrajectoryData) -> None:
        """Writes the files a run starts with: its configuration and normalisation."""
        atomic_write_text(self / CONFIG, config.to_toml())
        normalisation = {"x": data.x_norm.to_dict(), "y": data.y_norm.to_dict()}
        atomic_write_text(self / NORMALISATION, json.dumps(normalisation))

    def remove_start(self, created: bool) -> None:
        """Undoes a start that failed before the first checkpoint, so that the same command
        can run again; the directory goes too when this run `created` it and it is empty."""
        for name in (CONFIG, NORMALISATION, HISTORY):
            (self / name).unlink(missing_ok=True)
        if created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def config(self) -> RunConfig:
        """The stored configuration.

        **Raises:** `FileNotFoundError` without one; `ValueError` for an invalid one."""
        if not self.holds_run():
            raise FileNotFoundError(
                f"{str(self.path)!r} is not a jaxode run directory (no {CONFIG})."
            )
        return RunConfig.from_toml((self / CONFIG).read_text())

    def stored_config(self, config: RunConfig | None = None) -> RunConfig:
        """The configuration a resume continues with: the stored one, which `config` (when
        given) must equal.

        **Raises:** `FileNotFoundError` without a run; `ValueError` when `config` differs."""
        if not self.holds_run():
            raise FileNotFoundError(f"no run to resume in {str(self.path)!r} (missing {CONFIG}).")
        stored = self.config()
        if config is not None and config != stored:
            raise ValueError(
                f"resuming {str(self.path)!r} with a configuration other than its stored one ("
                + "; ".join(_differences(config, stored))
                + "); pass config=None (CLI: --resume alone) to continue the stored run."
            )
        return stored

    def normalisation(self) -> tuple[Affine, Affine]:
        """`(x_norm, y_norm)` of the run's data."""
        values = json.loads((self / NORMALISATION).read_text())
        return Affine.from_dict(values["x"]), Affine.from_dict(values["y"])

    def metrics(self) -> dict | None:
        """`metrics.json` of a run that has stopped for good (not interrupted), else `None`."""
        path = self / METRICS
        return json.loads(path.read_text()) if path.is_file() else None

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_text(self / METRICS, json_text(metrics))


@dataclasses.dataclass(frozen=True)
class CohortDir:
    """The folder of `jaxode train --seeds`: a run directory `seed-<s>` per seed, the listing
    `cohort.json` and, at the end, `summary.json` (mean +- sample std of every metric)."""

    path: pathlib.Path

    def __init__(self, path):
        object.__setattr__(self, "path", pathlib.Path(path))

    def holds_cohort(self) -> bool:
        return (self.path / COHORT).is_file()

    def start(self, config: RunConfig, seeds: list[int]) -> list[RunConfig]:
        """Writes the listing of a new cohort; returns its members' configurations.

        **Raises:** `FileExistsError` unless the folder is new or empty."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise FileExistsError(
                f"{str(out)!r} is a file; choose a directory for the cohort (--out)."
            )
        if out.is_dir() and any(out.iterdir()):
            raise FileExistsError(
                f"{str(out)!r} exists and is not empty; choose a new or empty --out, or "
                f"continue a cohort with --resume {out}."
            )
        members = [f"seed-{s}" for s in seeds]
        listing = json.dumps({"seeds": seeds, "members": members}, indent=2)
        atomic_write_text(out / COHORT, listing)
        return [with_seed(config, s) for s in seeds]

    def seeds(self) -> list[int]:
        return json.loads((self.path / COHORT).read_text())["seeds"]

    def members(self) -> list[RunDir]:
        listing = json.loads((self.path / COHORT).read_text())
        return [RunDir(self.path / name) for name in listing["members"]]

    def remove_start(self, created: bool) -> None:
        """Undoes a start none of whose members began."""
        (self.path / COHORT).unlink(missing_ok=True)
        if created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / SUMMARY, json_text(summary))
