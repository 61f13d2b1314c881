"""Sweep specifications: a base run configuration and the axes that vary it, read from TOML
and expanded into validated cells."""

import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import pathlib
import re
import tomllib
from collections.abc import Callable, Iterator

from .._training import (
    COHORT_FIELDS,
    PRESETS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    cohort_key,
    presets,
)

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = tuple(
    f"{section}.{field.name}"
    for section, klass in SECTIONS.items()
    for field in dataclasses.fields(klass)
)
_TOP_LEVEL = ("name", "description", "base", "grid", "blocks", "zip", "exclude")
# A sweep's name is its default folder, sweeps/<name>: one folder name, never a path.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
_SECTION_FIELDS = {s: tuple(f.name for f in dataclasses.fields(k)) for s, k in SECTIONS.items()}


def _as_dict(config: RunConfig) -> dict:
    """`config.to_dict()` without `dataclasses.asdict`'s deep copies (every field is a
    scalar): the same dictionary, several times faster."""
    return {
        section: {name: getattr(getattr(config, section), name) for name in names}
        for section, names in _SECTION_FIELDS.items()
    }


_DEFAULTS = _as_dict(RunConfig())


def config_hash(config: RunConfig) -> str:
    """16 hex digits of the SHA-256 of the settings that differ from the defaults: a cell's
    identity. Only the differences count, so a setting jaxode adds later (with a default
    that keeps the old behaviour) leaves the identity of every existing cell unchanged, and
    a resumed sweep keeps its results."""
    return _digest(_changed(_as_dict(config)))


def _changed(values: dict) -> dict:
    """The settings of `values` (nested, as `to_dict`) that differ from the defaults."""
    return {
        section: {
            name: value
            for name, value in fields.items()
            if name not in _DEFAULTS[section] or _DEFAULTS[section][name] != value
        }
        for section, fields in values.items()
    }


def _digest(changed: dict) -> str:
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a sweep: its `config`, its `key` (`config_hash`) and the values its axes
    gave it (`{"model.basis": "legendre", ...}`, in axis order)."""

    config: RunConfig
    key: str
    values: dict

    def label(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.values.items())


_COHORT_AXES = frozenset(f"{section}.{field}" for section, field in COHORT_FIELDS)


@dataclasses.dataclass(frozen=True)
class _Structure:
    """What the cells that differ only in `COHORT_FIELDS` share: the configuration of the first
    one, its differences from the defaults without the cohort fields, and its cohort key."""

    config: RunConfig
    changed: dict
    cohort: str


class _CellBuilder:
    """Builds the cells of one spec over its base configuration `base`, fast, with the checks
    and messages of `RunConfig.from_dict`:

    - each distinct axis value (by name, type and `repr`) is coerced and checked once, by
      `from_dict` on the first cell that has it;
    - a cell whose values are all known is the first cell of its structure (its values other
      than `COHORT_FIELDS`, the seeds) with its seed replaced, or the base with its values
      replaced, checked as a whole by `RunConfig` (the same cross-field checks);
    - the structure's differences from the defaults and its cohort key are computed once, so
      that a cell's key (`config_hash`) costs one digest."""

    def __init__(self, base: RunConfig, exclude: tuple):
        self.base, self.exclude = base, exclude
        self.base_dict = _as_dict(base)
        self.checked: dict[tuple, object] = {}
        self.seen: dict[str, int] = {}
        self.structures: dict[tuple, _Structure] = {}

    def build(self, values: dict, index: int) -> tuple[Cell, str] | None:
        """Cell number `index` (its `(cell, cohort key)`) with the axis values `values`, or
        `None` when an exclusion removes it.

        **Raises:** `ValueError` naming the cell for an invalid configuration or a repeated
        one."""
        merged = {section: dict(fields) for section, fields in self.base_dict.items()}
        for name, value in values.items():
            section, field = name.split(".")
            merged[section][field] = value
        if any(_matches(merged, condition) for condition in self.exclude):
            return None
        tokens = {name: (name, type(value), repr(value)) for name, value in values.items()}
        structure = tuple(t for name, t in tokens.items() if name not in _COHORT_AXES)
        try:
            config = self._config(tokens, structure, merged)
        except ValueError as error:
            raise ValueError(f"sweep cell {index} ({_label(values)}): {error}") from None
        if structure not in self.structures:
            changed = _changed(_as_dict(config))
            for section, field in COHORT_FIELDS:
                changed[section].pop(field, None)
            self.structures[structure] = _Structure(config, changed, cohort_key(config))
        known = self.structures[structure]
        key = _digest(_with_cohort_fields(known.changed, config))
        if key in self.seen:
            raise ValueError(
                f"sweep cells {self.seen[key]} and {index} ({_label(values)}) have the same "
                "configuration; remove the repeated value or add an [[exclude]] table."
            )
        self.seen[key] = index
        return Cell(config, key, values), known.cohort

    def _config(self, tokens: dict, structure: tuple, merged: dict) -> RunConfig:
        if not all(token in self.checked for token in tokens.values()):
            config = RunConfig.from_dict(merged)
            for name, token in tokens.items():
                section, field = name.split(".")
                self.checked[token] = getattr(getattr(config, section), field)
            return config
        known = self.structures.get(structure)
        changes: dict[str, dict] = {}
        if known is None:
            origin = self.base
            for name, token in tokens.items():
                section, field = name.split(".")
                changes.setdefault(section, {})[field] = self.checked[token]
        else:  # every cohort field: from its axis, or the base's where it has none
            origin = known.config
            for section, field in COHORT_FIELDS:
                token = tokens.get(f"{section}.{field}")
                value = self.base_dict[section][field] if token is None else self.checked[token]
                changes.setdefault(section, {})[field] = value
        sections = {section: getattr(origin, section) for section in SECTIONS}
        for section, fields in changes.items():
            sections[section] = dataclasses.replace(sections[section], **fields)
        return RunConfig(**sections)


def _with_cohort_fields(changed: dict, config: RunConfig) -> dict:
    """`changed` (a structure's differences from the defaults) with `config`'s cohort fields
    added where they differ from the defaults: `_changed` of the whole `config`."""
    for section, field in COHORT_FIELDS:
        value = getattr(getattr(config, section), field)
        if _DEFAULTS[section][field] != value:
            changed = {**changed, section: {**changed[section], field: value}}
    return changed


def _label(values: dict) -> str:
    return ", ".join(f"{n}={v!r}" for n, v in values.items()) or "the base"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A declared sweep.

    **Fields:**

    - `base`: nested `{"data": {...}, "model": {...}, "train": {...}}` settings over the defaults
      (or over a preset named by `base.preset`).
    - `grid`: `{"section.field": [values]}`, multiplied out (the product) for every cell.
    - `blocks`: a list of such grids; the cells are the union of the blocks (each multiplied
      by `grid` and `zip`), e.g. a static basis at degree 0 next to polynomial bases at
      degrees 1-4. No blocks: one block without axes.
    - `zip`: a list of tables of paired lists: each table is one axis whose i-th value sets
      every field of the table to its i-th entry.
    - `exclude`: a list of tables; a cell is left out when its configuration matches every
      field of a table (a value, or a list of values any of which matches).
    - `name`: one folder name (letters, digits, `.`, `_`, `-`, not starting with a dot):
      the CLI's default folder for the sweep is `sweeps/<name>`.
    - `description`: free text.

    **Raises:** `ValueError` for a `name` that is not one folder name.
    """

    base: dict = dataclasses.field(default_factory=dict)
    grid: dict = dataclasses.field(default_factory=dict)
    blocks: tuple = ()
    zip: tuple = ()
    exclude: tuple = ()
    name: str = "sweep"
    description: str = ""

    def __post_init__(self):
        _check_name(self.name, "SweepSpec")

    @classmethod
    def from_toml(cls, text: str, source: str = "sweep spec") -> "SweepSpec":
        """Reads the TOML form (keys as in the fields; dotted field names may be quoted,
        `"model.basis" = [...]`, or written as TOML dotted keys, `model.basis = [...]`).

        **Raises:** `ValueError` for invalid TOML, unknown keys or malformed axes."""
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{source} is not valid TOML: {error}.") from None
        unknown = sorted(set(values) - set(_TOP_LEVEL))
        if unknown:
            raise ValueError(
                f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(_TOP_LEVEL)}."
            )
        _check_name(str(values.get("name", "sweep")), source)
        grid = values.get("grid", {})
        if isinstance(grid, list):
            raise ValueError(
                f"{source}: write one [grid] table; for a union of grids use [[blocks]] tables."
            )
        return cls(
            base=_base(values.get("base", {}), source),
            grid=_axes(grid, "grid", source),
            blocks=tuple(
                _axes(b, f"blocks[{i}]", source) for i, b in enumerate(_tables(values, "blocks"))
            ),
            zip=tuple(_zipped(z, i, source) for i, z in enumerate(_tables(values, "zip"))),
            exclude=tuple(
                _condition(e, i, source) for i, e in enumerate(_tables(values, "exclude"))
            ),
            name=str(values.get("name", "sweep")),
            description=str(values.get("description", "")),
        )

    @classmethod
    def from_file(cls, path) -> "SweepSpec":
        """**Raises:** `FileNotFoundError` for a missing file, and as `from_toml`."""
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sweep spec {str(path)!r} does not exist.")
        return cls.from_toml(path.read_text(), source=f"sweep spec {str(path)!r}")

    def cells(self) -> list[Cell]:
        """Every cell, validated: each configuration is built and checked.

        **Raises:** `ValueError` naming the cell (its axis values) and the field for an
        invalid value or an impossible combination, two cells with the same configuration, or
        a spec without cells."""
        return [cell for cell, _ in self.expand()]

    def size(self) -> int:
        """The number of combinations of the axes: the cells before `exclude` removes some."""
        zipped = math.prod(min(map(len, z.values()), default=0) for z in self.zip)
        return sum(
            math.prod(len(v) for v in {**block, **self.grid}.values()) * zipped
            for block in self.blocks or ({},)
        )

    def expand(self, *, advance: Callable[[], object] | None = None) -> Iterator[tuple[Cell, str]]:
        """Every cell, validated as in `cells`, with its cohort's key (`cohort_key`), in spec
        order, in one pass. Each distinct axis value is checked once (through
        `RunConfig.from_dict`, with the first cell that has it); the other cells are built
        from the checked values and checked as a whole (`RunConfig`'s own checks), and their
        cohort keys are computed once per cohort.

        **Arguments:** `advance`: called after each combination of the axes (`size()` in all),
        kept or excluded: a progress bar's step.

        **Raises:** as `cells`, when the iteration reaches the cell."""
        builder = _CellBuilder(_base_config(self.base), self.exclude)
        count = 0
        for values in self._combinations():
            built = builder.build(values, count)
            if advance is not None:
                advance()
            if built is not None:
                count += 1
                yield built
        if not count:
            raise ValueError("the sweep has no cells: its [[exclude]] tables remove all of them.")

    def _combinations(self):
        zipped = [[dict(zip(z, row)) for row in zip(*z.values())] for z in self.zip]
        for block in self.blocks or ({},):
            axes = {**block, **self.grid}
            clash = sorted(set(block) & set(self.grid))
            for z in self.zip:
                clash += sorted(set(z) & set(axes))
            if clash:
                raise ValueError(
                    f"sweep axis {clash[0]} is set twice (in [grid], [[blocks]] or [[zip]]); "
                    "give each field one axis."
                )
            singles = [[{name: v} for v in values] for name, values in axes.items()]
            for parts in itertools.product(*singles, *zipped):
                yield {name: value for part in parts for name, value in part.items()}


def _check_name(name, source: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{source}: name {name!r} is not one folder name; the sweep's default folder is "
            "sweeps/<name>: use letters, digits, '.', '_' and '-' only, not starting with a dot "
            "(no '/' or '\\'), e.g. name = \"elm-bases\"."
        )


def _tables(values: dict, key: str) -> list:
    tables = values.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ValueError(f"{key} must be a list of tables: write [[{key}]] sections.")
    return tables


def _flatten(table: dict, where: str, source: str) -> dict:
    """`{"model": {"basis": x}}` and `{"model.basis": x}` alike become `{"model.basis": x}`;
    unknown field names are errors that suggest the closest ones."""
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in SECTIONS:
            for inner, v in value.items():
                flat[f"{key}.{inner}"] = v
        else:
            flat[key] = value
    for name in flat:
        if name not in FIELDS:
            close = difflib.get_close_matches(name, FIELDS, n=3)
            hint = f" did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"{source}: unknown field {name!r} in {where}; fields are written "
                f"section.field (e.g. model.basis, train.seed).{hint}"
            )
    return flat


def _axes(table: dict, where: str, source: str) -> dict:
    axes = _flatten(table, f"[{where}]", source)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"{source}: axis {name} in [{where}] must be a non-empty list of values, "
                f"got {values!r}."
            )
    return axes


def _zipped(table: dict, index: int, source: str) -> dict:
    axes = _axes(table, f"[[zip]] {index}", source)
    lengths = {name: len(values) for name, values in axes.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"{source}: the lists of [[zip]] table {index} must have one length, got {lengths}."
        )
    return axes


def _condition(table: dict, index: int, source: str) -> dict:
    condition = _flatten(table, f"[[exclude]] {index}", source)
    if not condition:
        raise ValueError(f"{source}: [[exclude]] table {index} is empty; it would remove all.")
    return {k: v if isinstance(v, list) else [v] for k, v in condition.items()}


def _matches(merged: dict, condition: dict) -> bool:
    """Whether the (nested) configuration `merged` has one of the allowed values of every
    field of `condition`."""
    return all(
        merged[name.split(".")[0]][name.split(".")[1]] in allowed
        for name, allowed in condition.items()
    )


def _base(table: dict, source: str) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"{source}: base must be a table: write a [base] section.")
    unknown = sorted(set(table) - {"preset", *SECTIONS})
    if unknown:
        raise ValueError(
            f"{source}: unknown key(s) {unknown} in [base]; valid keys: preset, data, model, "
            "train ([base.model] etc.)."
        )
    _base_config(table)  # fails early, naming the field
    return table


def _base_config(table: dict) -> RunConfig:
    layer = {}
    name = table.get("preset")
    if name is not None:
        if name not in presets():
            raise ValueError(f"unknown base.preset {name!r}; available: {', '.join(presets())}.")
        layer = tomllib.loads((PRESETS / f"{name}.toml").read_text())
    for section in SECTIONS:
        layer.setdefault(section, {}).update(table.get(section, {}))
    try:
        return RunConfig.from_dict(layer)
    except ValueError as error:
        raise ValueError(f"sweep [base]: {error}") from None
