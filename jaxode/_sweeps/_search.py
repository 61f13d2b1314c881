"""A search in place of a grid: distributions over configuration fields, a sampler that asks
for trials in batches and is told their validation errors, and the `[search]` table of a sweep
spec that declares them."""

import abc
import dataclasses
import math
import pathlib

import numpy as np


class AbstractDistribution(abc.ABC):
    """Where a searched field takes its values."""

    @abc.abstractmethod
    def sample(self, rng: np.random.Generator):
        """One value, drawn with `rng`."""

    @abc.abstractmethod
    def optuna(self):
        """The Optuna distribution of the same values."""

    @property
    def logarithmic(self) -> bool:
        return False


def _check_range(kind: str, low, high, positive: bool = False) -> None:
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float))) or not low < high:
        raise ValueError(f"{kind} needs [low, high] with low < high, got [{low!r}, {high!r}].")
    if positive and low <= 0:
        raise ValueError(f"{kind} needs a positive low end, got {low!r}.")


@dataclasses.dataclass(frozen=True)
class LogUniform(AbstractDistribution):
    """Uniform in the logarithm between `low` and `high` (> 0): a learning rate, a weight."""

    low: float
    high: float

    def __post_init__(self):
        _check_range("log-uniform", self.low, self.high, positive=True)

    def sample(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def optuna(self):
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high, log=True)

    @property
    def logarithmic(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class Uniform(AbstractDistribution):
    """Uniform between `low` and `high`."""

    low: float
    high: float

    def __post_init__(self):
        _check_range("uniform", self.low, self.high)

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def optuna(self):
        import optuna

        return optuna.distributions.FloatDistribution(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class IntRange(AbstractDistribution):
    """An integer from `low` to `high`, both included: a degree, a width."""

    low: int
    high: int

    def __post_init__(self):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)):
            raise ValueError(f"int needs integer ends, got [{self.low!r}, {self.high!r}].")
        _check_range("int", self.low, self.high)

    def sample(self, rng):
        return int(rng.integers(self.low, self.high, endpoint=True))

    def optuna(self):
        import optuna

        return optuna.distributions.IntDistribution(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Choice(AbstractDistribution):
    """One of `values`, each as likely: a basis, a solver."""

    values: tuple

    def __post_init__(self):
        if len(self.values) < 1 or len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"choice needs distinct values, got {list(self.values)!r}.")

    def sample(self, rng):
        return self.values[int(rng.integers(len(self.values)))]

    def optuna(self):
        import optuna

        return optuna.distributions.CategoricalDistribution(self.values)


DISTRIBUTIONS = {"log-uniform": LogUniform, "uniform": Uniform, "int": IntRange, "choice": Choice}


class AbstractSearchSampler(abc.ABC):
    """Proposes the trials of a search, in batches, and learns from their results."""

    seed: int

    @abc.abstractmethod
    def open(self, folder: pathlib.Path | None, name: str, space: dict) -> "AbstractStudy":
        """The study of the search stored in `folder` (resumed where one is; `None`: kept
        in memory, for a sampler that stores nothing)."""


class AbstractStudy(abc.ABC):
    """A search in progress: `ask` for trials, `tell` their results."""

    @abc.abstractmethod
    def ask(self, count: int) -> list[tuple[int, dict]]:
        """`count` trials as `(number, {field: value})`: first any asked and never told (a
        search killed mid-batch), then new ones."""

    @abc.abstractmethod
    def tell(self, number: int, value: float | None, state: str) -> None:
        """The result of trial `number`: its validation error (`None` when it has none) and
        `state`: `"complete"`, `"pruned"` or `"failed"`."""

    @abc.abstractmethod
    def told(self) -> int:
        """How many trials have a result."""


@dataclasses.dataclass(frozen=True)
class RandomSampler(AbstractSearchSampler):
    """Independent draws: trial `i` draws from a generator seeded with `(seed, i)`, so a
    resumed search proposes the same trials without storing them. Needs nothing beyond NumPy."""

    seed: int = 0

    def open(self, folder, name, space):
        return _RandomStudy(self.seed, space)


class _RandomStudy(AbstractStudy):
    def __init__(self, seed: int, space: dict):
        self.seed, self.space, self.next, self.results = seed, space, 0, 0

    def ask(self, count):
        trials = []
        for number in range(self.next, self.next + count):
            rng = np.random.default_rng([self.seed, number])
            trials.append((number, {f: self.space[f].sample(rng) for f in sorted(self.space)}))
        self.next += count
        return trials

    def tell(self, number, value, state):
        self.results += 1

    def told(self):
        return self.results


@dataclasses.dataclass(frozen=True)
class TPESampler(AbstractSearchSampler):
    """Optuna's tree-structured Parzen estimator (`pip install "jaxode[search]"`): each batch
    is proposed from the results of the trials told before it. The study is stored in the
    sweep folder (`search.db`, SQLite), so a resumed search goes on with the same study."""

    seed: int = 0

    def open(self, folder, name, space):
        try:
            import optuna
        except ImportError:
            raise ImportError(
                'search.sampler = "tpe" needs Optuna: pip install "jaxode[search]" (or use '
                'sampler = "random", which needs nothing more).'
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if folder is None:
            raise ValueError("a TPE search is stored in its sweep folder; give one.")
        folder.mkdir(parents=True, exist_ok=True)
        study = optuna.create_study(
            study_name=name,
            storage=f"sqlite:///{folder / 'search.db'}",
            load_if_exists=True,
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=self.seed),
        )
        return _OptunaStudy(study, {f: d.optuna() for f, d in space.items()})


class _OptunaStudy(AbstractStudy):
    def __init__(self, study, distributions: dict):
        self.study, self.distributions = study, distributions

    def ask(self, count):
        import optuna

        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        trials = [(t.number, dict(t.params)) for t in running[:count]]
        while len(trials) < count:
            trial = self.study.ask(self.distributions)
            trials.append((trial.number, dict(trial.params)))
        return trials

    def tell(self, number, value, state):
        import optuna

        # A pruned trial is told without a value: TPE counts it among the worse trials.
        states = {
            "complete": optuna.trial.TrialState.COMPLETE,
            "pruned": optuna.trial.TrialState.PRUNED,
            "failed": optuna.trial.TrialState.FAIL,
        }
        self.study.tell(number, value if state == "complete" else None, state=states[state])

    def told(self):
        import optuna

        finished = (
            optuna.trial.TrialState.COMPLETE,
            optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL,
        )
        return len(self.study.get_trials(deepcopy=False, states=finished))


SAMPLERS = {"random": RandomSampler, "tpe": TPESampler}


@dataclasses.dataclass(frozen=True)
class Search:
    """A search over configuration fields.

    **Arguments:**

    - `space`: `{"section.field": distribution}` (`LogUniform`, `Uniform`, `IntRange`,
      `Choice`).
    - `trials`: how many configurations to train.
    - `sampler`: `RandomSampler(seed)` (the default) or `TPESampler(seed)` (Optuna).
    - `batch`: trials asked for at once; they train as cohorts (one per structure) and are
      told their results when those finish.
    - `metric`: the validation error the sampler minimises (`val_global` or
      `val_per_sample`: never a test metric).
    """

    space: dict
    trials: int
    sampler: AbstractSearchSampler = RandomSampler()
    batch: int = 32
    metric: str = "val_global"

    def __post_init__(self):
        for name in ("trials", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"search.{name} must be an integer >= 1, got {value!r}.")
        if not self.space:
            raise ValueError("search.space must name at least one field.")
        if self.metric not in ("val_global", "val_per_sample"):
            raise ValueError(
                f"search.metric must be 'val_global' or 'val_per_sample' (a validation error: "
                f"a test metric never selects), got {self.metric!r}."
            )


def search_from_table(table: dict, source: str, fields: tuple) -> Search:
    """The `Search` a spec's `[search]` table declares.

    **Raises:** `ValueError` naming the unknown key, field, distribution or sampler."""
    values = dict(table)
    known = ("sampler", "seed", "trials", "batch", "metric", "space")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{source}: unknown search key(s) {unknown}; valid: {', '.join(known)}.")
    sampler = values.pop("sampler", "random")
    if sampler not in SAMPLERS:
        raise ValueError(
            f"{source}: search.sampler must be one of {list(SAMPLERS)}, got {sampler!r}."
        )
    seed = values.pop("seed", 0)
    space = {}
    for field, spec in _flatten(values.pop("space", {}), fields).items():
        if field not in fields:
            raise ValueError(f"{source}: search.space names {field!r}, not a configuration field.")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
            raise ValueError(
                f"{source}: search.space.{field} must be one of "
                f"{', '.join(f'{{ {k} = [...] }}' for k in DISTRIBUTIONS)}, got {spec!r}."
            )
        kind, args = next(iter(spec.items()))
        try:
            space[field] = Choice(tuple(args)) if kind == "choice" else DISTRIBUTIONS[kind](*args)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: search.space.{field}: {error}") from None
    if "trials" not in values:
        raise ValueError(f"{source}: search.trials is required (how many configurations).")
    try:
        return Search(space=space, sampler=SAMPLERS[sampler](seed), **values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: {error}") from None


def _flatten(space: dict, fields: tuple, prefix: str = "") -> dict:
    """`{"train": {"learning_rate": {...}}}` (TOML's dotted keys) as `{"train.learning_rate":
    {...}}`: the table of a configuration field (or of a name deeper than a section) is a
    leaf."""
    out = {}
    for key, value in space.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in fields and not prefix:
            out.update(_flatten(value, fields, f"{name}."))
        else:
            out[name] = value
    return out
