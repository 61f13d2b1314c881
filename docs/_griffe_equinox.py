"""A Griffe extension for the API pages: the constructor signature of an Equinox module.

An `eqx.Module` is a dataclass whose `__init__` Equinox generates from its fields, so static
analysis finds no `__init__` and mkdocstrings would show the class without a signature. For
every concrete class (its name does not start with `Abstract`) that derives from
`equinox.Module` and defines no `__init__` of its own, this adds
one whose parameters are the dataclass fields, as Equinox makes them: the fields of the bases
first, in definition order, a redefinition keeping its place; `eqx.AbstractVar` and
`eqx.AbstractClassVar` declarations are not fields; `eqx.field(default=...,
default_factory=..., init=False, kw_only=True)` are honoured. Loaded by mkdocs.yml
(`extensions:` of the Python handler).
"""

from typing import Any

import griffe

_MODULE = {"equinox.Module", "equinox._module.Module", "equinox._module._module.Module"}
_ABSTRACT = ("AbstractVar", "AbstractClassVar")
_FIELD = {"equinox.field", "equinox._module.field", "equinox._module._field.field"}


def _is_module(cls: griffe.Class, seen: set[str]) -> bool:
    if cls.path in seen:
        return False
    seen.add(cls.path)
    for base in cls.bases:
        if isinstance(base, griffe.Expr) and base.canonical_path in _MODULE:
            return True
    return any(_is_module(base, seen) for base in cls.resolved_bases if base.is_class)


def _call_arguments(call: griffe.ExprCall) -> dict[str, Any]:
    return {
        argument.name: argument.value
        for argument in call.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _fields(cls: griffe.Class) -> list[griffe.Parameter]:
    parameters: list[griffe.Parameter] = []
    for member in cls.members.values():
        if member.is_alias or not member.is_attribute or member.annotation is None:
            continue
        if "property" in member.labels or (
            "class-attribute" in member.labels and "instance-attribute" not in member.labels
        ):
            continue
        annotation = member.annotation
        if isinstance(annotation, griffe.ExprSubscript):
            if str(annotation.left).split(".")[-1] in _ABSTRACT:
                continue
        value = member.value
        arguments: dict[str, Any] = {}
        if isinstance(value, griffe.ExprCall) and value.function.canonical_path in _FIELD:
            arguments = _call_arguments(value)
            value = arguments.get("default")
            if "default_factory" in arguments:
                value = griffe.ExprCall(function=arguments["default_factory"], arguments=[])
        if str(arguments.get("init")) == "False":
            continue
        kind = (
            griffe.ParameterKind.keyword_only
            if str(arguments.get("kw_only")) == "True"
            else griffe.ParameterKind.positional_or_keyword
        )
        parameters.append(
            griffe.Parameter(member.name, annotation=annotation, kind=kind, default=value)
        )
    return parameters


def _init(cls: griffe.Class) -> griffe.Function:
    chain = [base for base in reversed(cls.mro()) if base.is_class] + [cls]
    fields: dict[str, griffe.Parameter] = {}
    for base in chain:
        for parameter in _fields(base):
            fields[parameter.name] = parameter  # a redefinition keeps its place
    positional = [p for p in fields.values() if p.kind is not griffe.ParameterKind.keyword_only]
    keyword = [p for p in fields.values() if p.kind is griffe.ParameterKind.keyword_only]
    return griffe.Function(
        "__init__",
        lineno=0,
        endlineno=0,
        parent=cls,
        parameters=griffe.Parameters(
            griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
            *positional,
            *keyword,
        ),
        returns="None",
    )


def _visit(obj: griffe.Module | griffe.Class, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    concrete = obj.is_class and not obj.name.startswith("Abstract")
    if concrete and "__init__" not in obj.members and _is_module(obj, set()):
        try:
            obj.set_member("__init__", _init(obj))
        except ValueError:  # an unresolvable method resolution order: leave the class as is
            pass
    for member in obj.members.values():
        if not member.is_alias and (member.is_module or member.is_class):
            _visit(member, seen)


class EquinoxModules(griffe.Extension):
    """Adds the dataclass `__init__` of Equinox modules (see the module's docstring)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _visit(pkg, set())
