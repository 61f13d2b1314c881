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
    RECORDING_ONLY,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    cohort_key,
    ignored_settings,
    normalised,
    presets,
)
from ._pruning import AbstractPruning, pruning_from_table
from ._search import Search, search_from_table

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = tuple(
    f"{section}.{field.name}"
    for section, klass in SECTIONS.items()
    for field in dataclasses.fields(klass)
)
_TOP_LEVEL = (
    "name",
    "description",
    "base",
    "grid",
    "blocks",
    "zip",
    "exclude",
    "pruning",
    "search",
)
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
    """16 hex digits of the SHA-256 of the settings that differ from the defaults, once the
    settings `config` ignores are at theirs (`normalised`): a cell's identity. Only the
    differences count, so a setting jaxode adds later (with a default that keeps the old
    behaviour) leaves the identity of every existing cell unchanged, and a resumed sweep keeps
    its results; configurations that differ only in settings they ignore (the degree of a
    static basis, the solver of a ResNet: `ignored_settings`) train the same run and have one
    identity. Settings that change only what a run records (`RECORDING_ONLY`) are no part
    of it."""
    values = _as_dict(normalised(config))
    for setting in RECORDING_ONLY:
        section, name = setting.split(".")
        del values[section][name]
    return _digest(_changed(values))


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
    gave it (`{"model.basis": "legendre", ...}`, in axis order). Of the combinations of the
    axes that differ only in settings they ignore (`ignored_settings`), the first is the cell,
    and the configuration as it wrote it is that of every cell of its cohort."""

    config: RunConfig
    key: str
    values: dict

    def label(self) -> str:
        return _label(self.values)


@dataclasses.dataclass(frozen=True)
class Merged:
    """A combination of the axes that is no cell of its own: its configuration differs from
    that of an earlier cell, `into`, only in settings both ignore, so `into` trains it.

    **Fields:** `values`: its axis values; `into`: the cell that trains it (whose axis values
    the sweep keeps); `reasons`: `{"section.field": reason}` for each setting in which the two
    differ, with why it is ignored (see `ignored_settings`)."""

    values: dict
    into: Cell
    reasons: dict

    def label(self) -> str:
        return _label(self.values)


_COHORT_AXES = frozenset(f"{section}.{field}" for section, field in COHORT_FIELDS)


@dataclasses.dataclass(frozen=True)
class _Structure:
    """What the cells that differ only in `COHORT_FIELDS` share, from the first one:

    - `config`: the configuration its cells train (with the first cell's cohort fields):
      as written by the first structure of the sweep with its normalised configuration
      (`normalised`), which is this one's unless this one differs from it only in settings
      both ignore;
    - `written`: the first cell's configuration as written, and `ignored`, the settings it
      ignores (`ignored_settings`);
    - `changed`, `written_changed`: the differences from the defaults, without the cohort
      fields, of the normalised and of the written configuration (the two keys of a cell);
    - `cohort`: the cohort key of `config`."""

    config: RunConfig
    changed: dict
    cohort: str
    written: RunConfig
    written_changed: dict
    ignored: dict

    @classmethod
    def of(cls, written: RunConfig, firsts: dict) -> "_Structure":
        """The structure whose first cell has the configuration `written`; `firsts` maps the
        normalised structures seen so far to the configurations written first (updated)."""
        plain = normalised(written)
        changed = _without_cohort_fields(_changed(_as_dict(plain)))
        if plain is written:
            written_changed = changed
        else:
            written_changed = _without_cohort_fields(_changed(_as_dict(written)))
        config = firsts.setdefault(_digest(changed), written)
        return cls(
            config, changed, cohort_key(config), written, written_changed, ignored_settings(written)
        )

    def keys(self, config: RunConfig) -> tuple[str, str]:
        """`(key, written key)` of the cell of this structure with `config`'s cohort fields:
        `config_hash` of its configuration, and the digest of its configuration as written."""
        key = _digest(_with_cohort_fields(self.changed, config))
        if self.written_changed is self.changed:
            return key, key
        return key, _digest(_with_cohort_fields(self.written_changed, config))


def _without_cohort_fields(changed: dict) -> dict:
    for section, field in COHORT_FIELDS:
        changed[section].pop(field, None)
    return changed


def _with_cohort_values(origin: RunConfig, config: RunConfig) -> RunConfig:
    """`origin` with the values of `config`'s cohort fields."""
    sections = {section: getattr(origin, section) for section in SECTIONS}
    for section, field in COHORT_FIELDS:
        value = getattr(getattr(config, section), field)
        sections[section] = dataclasses.replace(sections[section], **{field: value})
    return RunConfig(**sections)


class _CellBuilder:
    """Builds the cells of one spec over its base configuration `base`, fast, with the checks
    and messages of `RunConfig.from_dict`:

    - each distinct axis value (by name, type and `repr`) is coerced and checked once, by
      `from_dict` on the first cell that has it;
    - a cell whose values are all known is the first cell of its structure (its values other
      than `COHORT_FIELDS`, the seeds) with its seed replaced, or the base with its values
      replaced, checked as a whole by `RunConfig` (the same cross-field checks);
    - the structure's normalised configuration (`normalised`: the settings it ignores at
      their defaults), its differences from the defaults and its cohort key are computed once,
      so that a cell's key (`config_hash`) costs one digest (two for a structure that sets
      something it ignores: its digest as written finds repeated values);
    - a combination whose key an earlier cell has is a `Merged`, not a cell."""

    def __init__(self, base: RunConfig, exclude: tuple):
        self.base, self.exclude = base, exclude
        self.base_dict = _as_dict(base)
        self.checked: dict[tuple, object] = {}
        # key -> (index, cell, structure) of the cell; written key -> index of its cell.
        self.seen: dict[str, tuple[int, Cell, _Structure]] = {}
        self.written: dict[str, int] = {}
        self.structures: dict[tuple, _Structure] = {}
        self.firsts: dict[str, RunConfig] = {}

    def build(self, values: dict, index: int) -> tuple[Cell, str] | Merged | None:
        """Cell number `index` (its `(cell, cohort key)`) with the axis values `values`; a
        `Merged` when an earlier cell has its normalised configuration; `None` when an
        exclusion removes it.

        **Raises:** `ValueError` naming the cell for an invalid configuration or one that an
        earlier cell has as written (a repeated value)."""
        merged = {section: dict(fields) for section, fields in self.base_dict.items()}
        for name, value in values.items():
            section, field = name.split(".")
            merged[section][field] = value
        if any(_matches(merged, condition) for condition in self.exclude):
            return None
        tokens = {name: (name, type(value), repr(value)) for name, value in values.items()}
        structure = tuple(t for name, t in tokens.items() if name not in _COHORT_AXES)
        try:
            config, trained = self._config(tokens, structure, merged)
        except ValueError as error:
            raise ValueError(f"sweep cell {index} ({_label(values)}): {error}") from None
        known = self.structures.get(structure)
        if known is None:  # `config` is the structure's first, as written
            known = self.structures[structure] = _Structure.of(config, self.firsts)
        if not trained and known.config is not known.written:
            config = _with_cohort_values(known.config, config)
        key, written = known.keys(config)
        if written in self.written:
            raise ValueError(
                f"sweep cells {self.written[written]} and {index} ({_label(values)}) have the "
                "same configuration; remove the repeated value or add an [[exclude]] table."
            )
        first = self.seen.get(key)
        if first is not None:
            self.written[written] = first[0]
            return Merged(values, first[1], _reasons(first[2], known))
        self.written[written] = index
        cell = Cell(config, key, values)
        self.seen[key] = (index, cell, known)
        return cell, known.cohort

    def _config(self, tokens: dict, structure: tuple, merged: dict) -> tuple[RunConfig, bool]:
        """The cell's configuration, and whether it is the one it trains (built from its
        structure's `config`) rather than the one it wrote."""
        if not all(token in self.checked for token in tokens.values()):
            config = RunConfig.from_dict(merged)
            for name, token in tokens.items():
                section, field = name.split(".")
                self.checked[token] = getattr(getattr(config, section), field)
            return config, False
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
        return RunConfig(**sections), known is not None


def _reasons(first: _Structure, other: _Structure) -> dict:
    """`{"section.field": reason}` for each setting other than `COHORT_FIELDS` in which the
    written configurations of two structures with one normalised configuration differ: each
    one that both ignore (`ignored_settings`)."""
    one, two = _as_dict(first.written), _as_dict(other.written)
    return {
        f"{section}.{name}": other.ignored.get(f"{section}.{name}")
        or first.ignored.get(f"{section}.{name}", "")
        for section, values in one.items()
        for name, value in values.items()
        if (section, name) not in COHORT_FIELDS and two[section][name] != value
    }


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
    - `pruning`: how each cohort stops its hopeless members early (`Halving`), or `None`:
      every cell trains to its end.
    - `search`: a `Search` whose trials are the cells (`run_search`), in place of axes.

    **Raises:** `ValueError` for a `name` that is not one folder name.
    """

    base: dict = dataclasses.field(default_factory=dict)
    grid: dict = dataclasses.field(default_factory=dict)
    blocks: tuple = ()
    zip: tuple = ()
    exclude: tuple = ()
    name: str = "sweep"
    description: str = ""
    pruning: AbstractPruning | None = None
    search: Search | None = None

    def __post_init__(self):
        _check_name(self.name, "SweepSpec")
        if self.search is not None and (self.grid or self.blocks or self.zip):
            raise ValueError(
                "a sweep spec declares its cells either by axes ([grid], [[blocks]], [[zip]]) "
                "or by a [search]: move the searched fields into [search.space]."
            )

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
            pruning=(
                pruning_from_table(values["pruning"], source) if "pruning" in values else None
            ),
            search=(
                search_from_table(values["search"], source, FIELDS) if "search" in values else None
            ),
        )

    @classmethod
    def from_file(cls, path) -> "SweepSpec":
        """**Raises:** `FileNotFoundError` for a missing file, and as `from_toml`."""
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sweep spec {str(path)!r} does not exist.")
        return cls.from_toml(path.read_text(), source=f"sweep spec {str(path)!r}")

    def cells(self) -> list[Cell]:
        """Every cell, validated: each configuration is built and checked. Combinations whose
        configurations differ only in settings they ignore (`ignored_settings`: the degree of a
        static basis, the solver of a ResNet, ...) are one cell, the first of them, with its
        axis values and its configuration normalised (those settings at their defaults); see
        `expand` for the combinations merged.

        **Raises:** `ValueError` naming the cell (its axis values) and the field for an
        invalid value or an impossible combination, two combinations with the same
        configuration as written (a repeated value), or a spec without cells."""
        return [cell for cell, _ in self.expand()]

    def size(self) -> int:
        """The number of combinations of the axes: the cells before `exclude` removes some."""
        zipped = math.prod(min(map(len, z.values()), default=0) for z in self.zip)
        return sum(
            math.prod(len(v) for v in {**block, **self.grid}.values()) * zipped
            for block in self.blocks or ({},)
        )

    def expand(
        self,
        *,
        advance: Callable[[], object] | None = None,
        merged: Callable[[Merged], object] | None = None,
    ) -> Iterator[tuple[Cell, str]]:
        """Every cell, validated as in `cells`, with its cohort's key (`cohort_key`), in spec
        order, in one pass. Each distinct axis value is checked once (through
        `RunConfig.from_dict`, with the first cell that has it); the other cells are built
        from the checked values and checked as a whole (`RunConfig`'s own checks), and their
        cohort keys are computed once per cohort.

        **Arguments:**

        - `advance`: called after each combination of the axes (`size()` in all), kept,
          merged or excluded: a progress bar's step.
        - `merged`: called with a `Merged` for each combination that an earlier cell trains
          (its configuration differs from that cell's only in settings both ignore).

        **Raises:** as `cells`, when the iteration reaches the cell."""
        builder = _CellBuilder(_base_config(self.base), self.exclude)
        count = 0
        for values in self._combinations():
            built = builder.build(values, count)
            if advance is not None:
                advance()
            if isinstance(built, Merged):
                if merged is not None:
                    merged(built)
            elif built is not None:
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
