"""Run directories and cohort directories: the names of the files a run writes (those the
training engine writes itself, `checkpoint.eqx` and `history.csv`, come from `_members`),
the rule of which runs may train together, and the reading and writing of what a run stores
beside its model (configuration, normalisation, metrics). The training command, sweeps,
`jaxode runs` and reports all go through here."""

import contextlib
import dataclasses
import hashlib
import json
import pathlib

from .._datasets import Affine, Dataset, TrajectoryData
from .._files import atomic_write_text, json_text, read_json, read_text
from .._locks import folder_lock, without_lock
from .._provenance import provenance
from .._wording import setting
from ._config import RunConfig, is_time_series
from ._domain import TrainingDomain
from ._horizons import horizon_is_data
from ._members import CHECKPOINT, HISTORY
from ._padding import PADDABLE

CONFIG = "config.toml"
NORMALISATION = "normalisation.json"
MODEL = "model.eqx"
METRICS = "metrics.json"
PLOT = "loss.png"
EVALUATION = "evaluation.json"
# Where the run came from: the provenance of the process that started it and of each resume.
PROVENANCE = "provenance.json"
# A sweep cell whose training raised keeps the traceback here.
ERROR = "error.txt"
# Any of these marks a folder as a run directory.
RUN_FILES = (CONFIG, NORMALISATION, CHECKPOINT, HISTORY, MODEL, METRICS)
COHORT, SUMMARY = "cohort.json", "summary.json"

# The fields in which the members of one cohort may differ: runs equal in every other field
# train as one compiled program. Each is data of a member, not structure: its seed, the scale
# of its initial weights, its learning rate and weight decay (hyperparameters in the
# optimiser's state) and its regulariser weights (`build_cohort_trainers`).
COHORT_FIELDS = (
    ("train", "seed"),
    ("train", "learning_rate"),
    ("train", "weight_decay"),
    ("train", "tikhonov"),
    ("train", "readout_tikhonov"),
    ("train", "gram"),
    ("model", "field_init_std"),
)
# Member data too when every member's basis is polynomial (`PADDABLE`): the cohort trains in
# the Legendre basis of its largest degree, each member through its own matrix (`pad`).
BASIS_FIELDS = (("model", "basis"), ("model", "degree"))
# Member data too for a net of fixed steps whose basis window follows its horizon (`rescale`): the
# cohort trains at horizon 1, each member's field times its own T.
HORIZON_FIELDS = (("model", "t1"),)


def _member_fields(config: RunConfig) -> tuple[tuple[str, str], ...]:
    """The fields in which `config` may differ from the other members of its cohort."""
    minibatch = config.train.optimiser != "gnvpro"
    polynomial = config.model.basis in PADDABLE and minibatch
    horizon = horizon_is_data(config.model, is_time_series(config.data)) and minibatch
    return COHORT_FIELDS + BASIS_FIELDS * polynomial + HORIZON_FIELDS * horizon


@dataclasses.dataclass(frozen=True)
class CohortLayout:
    """How a cohort lays out what its members differ in, which its checkpoints hold: the
    degree its polynomial bases are padded to (`None`: not padded), whether each member's
    learning rate (and weight decay) is data in its optimiser state, and whether its horizon
    is data (`rescale`). A part of a planned
    cohort (a resume with fewer cells, the survivors of a rung) trains in the layout of the
    whole (`cohort_layout` of all its configurations), so that its members' checkpoints
    load."""

    pad_to: int | None = None
    member_rates: bool = False
    horizons: bool = False


def cohort_layout(configs: list[RunConfig]) -> CohortLayout:
    """The layout of a cohort of `configs`."""
    rates = len({(c.train.learning_rate, c.train.weight_decay) for c in configs}) > 1
    horizons = len({c.model.t1 for c in configs}) > 1
    return CohortLayout(padded_degree(configs), rates, horizons)


def padded_degree(configs: list[RunConfig]) -> int | None:
    """The degree a cohort of `configs` trains its bases in, `None` when every member has the
    same basis and degree (nothing to pad)."""
    if len({(c.model.basis, c.model.degree) for c in configs}) == 1:
        return None
    # A static basis is one constant function, whatever the degree it was given.
    return max(0 if c.model.basis == "static" else c.model.degree for c in configs)


def cohort_key(config: RunConfig) -> str:
    """The identity of the cohort `config` belongs to: a hash of the settings that differ
    from the defaults, without the fields in which cohort members may differ
    (`COHORT_FIELDS`), so that a setting jaxode adds later (at a default that keeps the old
    behaviour) leaves every key as it was."""
    defaults = RunConfig().to_dict()
    changed = {
        section: {
            name: value
            for name, value in fields.items()
            if (section, name) not in _member_fields(config) and defaults[section][name] != value
        }
        for section, fields in config.to_dict().items()
    }
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:12]


def check_cohort(configs: list[RunConfig]) -> None:
    """**Raises:** `ValueError` naming the fields in which a member differs from member 0
    other than `COHORT_FIELDS`."""
    first = configs[0].to_dict()
    fields = set.intersection(*(set(_member_fields(c)) for c in configs))
    for k, config in enumerate(configs[1:], start=1):
        differing = [
            f"{section}.{key}"
            for section, entries in config.to_dict().items()
            for key, value in entries.items()
            if first[section][key] != value and (section, key) not in fields
        ]
        if differing:
            every = COHORT_FIELDS + BASIS_FIELDS + HORIZON_FIELDS
            allowed = ", ".join(f"{s}.{k}" for s, k in every if (s, k) in fields)
            if not set(BASIS_FIELDS) <= fields:
                allowed += " (and model.basis, model.degree where every basis is polynomial)"
            if not set(HORIZON_FIELDS) <= fields:
                allowed += " (and model.t1 of nets of fixed steps whose basis window follows it)"
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


# What to do about a run directory's damaged start files.
_RESTORE = "restore it from a copy, or train the run anew in another directory."


def _remove_if_empty(folder: pathlib.Path, created: bool) -> None:
    """Removes `folder` when this process `created` it and only its lock file is left."""
    if created and folder.is_dir() and not without_lock(folder):
        # Called while an error propagates: a file that appeared meanwhile keeps the folder,
        # and never hides that error.
        with contextlib.suppress(OSError):
            for path in folder.iterdir():
                path.unlink()
            folder.rmdir()


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
                f"{str(path)!r} already holds a run; pass "
                f"{setting('resume=True', '--resume')} to continue it or choose another "
                f"{setting('run_dir', '--out')}."
            )
        if path.is_dir() and without_lock(path):
            raise FileExistsError(
                f"{str(path)!r} exists and holds files but no run; choose an empty or new "
                f"directory ({setting('run_dir', '--out')})."
            )

    def lock(self):
        """The run directory's lock (see `folder_lock`): held while a process writes it."""
        return folder_lock(self.path, "run directory")

    def start(self, config: RunConfig, data: Dataset | TrajectoryData) -> None:
        """Writes the files a run starts with: its configuration, and its normalisation with,
        beside it, the training domain (`TrainingDomain`; none for a time series)."""
        atomic_write_text(self / CONFIG, config.to_toml())
        normalisation = {"x": data.x_norm.to_dict(), "y": data.y_norm.to_dict()}
        domain = TrainingDomain.of(data)
        if domain is not None:
            normalisation["domain"] = domain.to_dict()
        atomic_write_text(self / NORMALISATION, json.dumps(normalisation))
        atomic_write_text(self / PROVENANCE, json_text({"started": provenance(), "resumed": []}))

    def record_resume(self) -> None:
        """Adds this process's provenance to the resumes `provenance.json` lists (a run
        started before jaxode recorded provenance gets the file, with no start)."""
        path = self / PROVENANCE
        record = {"started": None, "resumed": []}
        if path.is_file():
            remedy = "it lists where the run came from; delete it to start the list anew."
            record = read_json(path, "provenance record", remedy)
        record["resumed"] = [*record.get("resumed", []), provenance()]
        atomic_write_text(path, json_text(record))

    def remove_start(self, created: bool) -> None:
        """Undoes a start that failed before the first checkpoint, so that the same command
        can run again; the directory goes too when this run `created` it and it is empty."""
        for name in (CONFIG, NORMALISATION, HISTORY, PROVENANCE):
            (self / name).unlink(missing_ok=True)
        self.remove_if_empty(created)

    def remove_if_empty(self, created: bool) -> None:
        """Removes the directory when this process `created` it and it holds nothing."""
        _remove_if_empty(self.path, created)

    def config(self) -> RunConfig:
        """The stored configuration.

        **Raises:** `FileNotFoundError` without one; `ValueError` for an invalid one."""
        if not self.holds_run():
            raise FileNotFoundError(
                f"{str(self.path)!r} is not a jaxode run directory (no {CONFIG})."
            )
        path = self / CONFIG
        text = read_text(path, "run configuration", _RESTORE)
        try:
            return RunConfig.from_toml(text)
        except ValueError as error:
            raise ValueError(f"run configuration {str(path)!r}: {error} {_RESTORE}") from None

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
                + "); pass "
                + setting("config=None", "--resume alone, without other options,")
                + " to continue the stored run."
            )
        return stored

    def normalisation(self) -> tuple[Affine, Affine]:
        """`(x_norm, y_norm)` of the run's data."""
        path = self / NORMALISATION
        values = read_json(path, "the run's normalisation", _RESTORE)
        try:
            return Affine.from_dict(values["x"]), Affine.from_dict(values["y"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"the run's normalisation {str(path)!r} is damaged ({error!r}); {_RESTORE}"
            ) from None

    def domain(self) -> TrainingDomain | None:
        """The training domain stored beside the normalisation; `None` for a time series and
        for a run written before jaxode stored it.

        **Raises:** `ValueError` for a damaged one."""
        path = self / NORMALISATION
        values = read_json(path, "the run's normalisation", _RESTORE)
        if "domain" not in values:
            return None
        try:
            return TrainingDomain.from_dict(values["domain"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"the training domain in {str(path)!r} is damaged ({error!r}); restore the file "
                "from a copy, or delete its 'domain' entry to predict without the check."
            ) from None

    def metrics(self) -> dict | None:
        """`metrics.json` of a run that has stopped for good (not interrupted), else `None`."""
        path = self / METRICS
        remedy = "delete it to evaluate the run again (jaxode evaluate) or train it anew."
        return read_json(path, "the run's metrics", remedy) if path.exists() else None

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
                f"{str(out)!r} is a file; choose a directory for the cohort "
                f"({setting('its path', '--out')})."
            )
        if out.is_dir() and without_lock(out):
            raise FileExistsError(
                f"{str(out)!r} exists and is not empty; choose a new or empty "
                f"{setting('folder', '--out')}, or continue a cohort with "
                f"{setting('resume=True', f'--resume {out}')}."
            )
        members = [f"seed-{s}" for s in seeds]
        listing = json.dumps({"seeds": seeds, "members": members}, indent=2)
        atomic_write_text(out / COHORT, listing)
        return [with_seed(config, s) for s in seeds]

    def lock(self):
        """The cohort folder's lock (see `folder_lock`): held while a process writes it."""
        return folder_lock(self.path, "cohort folder")

    def _listing(self) -> dict:
        path = self.path / COHORT
        remedy = (
            "it lists the cohort's seeds and member folders: restore it, or train the cohort "
            "anew in another folder."
        )
        listing = read_json(path, "cohort listing", remedy)
        seeds, members = listing.get("seeds"), listing.get("members")
        if (
            not isinstance(seeds, list)
            or not isinstance(members, list)
            or len(seeds) != len(members)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
            or not all(
                isinstance(m, str) and m and "/" not in m and m not in (".", "..") for m in members
            )
        ):
            raise ValueError(
                f"cohort listing {str(path)!r} is damaged: it needs 'seeds' (integers) and "
                f"'members' (folder names) of one length; {remedy}"
            )
        return listing

    def seeds(self) -> list[int]:
        return self._listing()["seeds"]

    def members(self) -> list[RunDir]:
        return [RunDir(self.path / name) for name in self._listing()["members"]]

    def remove_start(self, created: bool) -> None:
        """Undoes a start none of whose members began."""
        (self.path / COHORT).unlink(missing_ok=True)
        self.remove_if_empty(created)

    def remove_if_empty(self, created: bool) -> None:
        """Removes the folder when this process `created` it and it holds nothing."""
        _remove_if_empty(self.path, created)

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / SUMMARY, json_text(summary))
