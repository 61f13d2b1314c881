"""Sweep specifications: a base run configuration and the axes that vary it, read from TOML
and expanded into validated cells."""

import dataclasses
import difflib
import hashlib
import itertools
import json
import pathlib
import tomllib

from .._training import PRESETS, DataConfig, ModelConfig, RunConfig, TrainConfig, presets

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
FIELDS = tuple(
    f"{section}.{field.name}"
    for section, klass in SECTIONS.items()
    for field in dataclasses.fields(klass)
)
_TOP_LEVEL = ("name", "description", "base", "grid", "blocks", "zip", "exclude")


def config_hash(config: RunConfig) -> str:
    """16 hex digits of the SHA-256 of the settings that differ from the defaults: a cell's
    identity. Only the differences count, so a setting jaxode adds later (with a default
    that keeps the old behaviour) leaves the identity of every existing cell unchanged, and
    a resumed sweep keeps its results."""
    defaults = RunConfig().to_dict()
    changed = {
        section: {
            name: value
            for name, value in values.items()
            if name not in defaults[section] or defaults[section][name] != value
        }
        for section, values in config.to_dict().items()
    }
    text = json.dumps(changed, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One run of a sweep: its `config`, its `key` (`config_hash`) and the values its axes
    gave it (`{"model.basis": "legendre", ...}`, in axis order)."""

    config: RunConfig
    key: str
    values: dict

    def label(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.values.items())


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
    - `name`, `description`: free text.
    """

    base: dict = dataclasses.field(default_factory=dict)
    grid: dict = dataclasses.field(default_factory=dict)
    blocks: tuple = ()
    zip: tuple = ()
    exclude: tuple = ()
    name: str = "sweep"
    description: str = ""

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
        base = _base_config(self.base)
        cells, seen = [], {}
        for values in self._combinations():
            merged = base.to_dict()
            for name, value in values.items():
                section, field = name.split(".")
                merged[section][field] = value
            if any(_matches(merged, condition) for condition in self.exclude):
                continue
            label = ", ".join(f"{n}={v!r}" for n, v in values.items()) or "the base"
            try:
                config = RunConfig.from_dict(merged)
            except ValueError as error:
                raise ValueError(f"sweep cell {len(cells)} ({label}): {error}") from None
            key = config_hash(config)
            if key in seen:
                raise ValueError(
                    f"sweep cells {seen[key]} and {len(cells)} ({label}) have the same "
                    "configuration; remove the repeated value or add an [[exclude]] table."
                )
            seen[key] = len(cells)
            cells.append(Cell(config, key, values))
        if not cells:
            raise ValueError("the sweep has no cells: its [[exclude]] tables remove all of them.")
        return cells

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
