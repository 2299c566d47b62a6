"""The params reference page, generated from the schema's field descriptions.

``impq/config.py`` is the one place that says what each key of ``params.yaml`` means: every
pydantic ``Field`` carries a ``description``, every section a docstring. This mkdocs hook
renders them as ``reference/params.md`` at build time, and a key without a description
fails the build (``MissingDescriptionError``), so the page can never fall behind the schema.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Iterator
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = ["PAGE", "MissingDescriptionError", "on_files", "render", "schema_keys"]

PAGE = "reference/params.md"
"""Where the generated page sits in the site."""

_INTRO = """\
# Params reference

Every key of `params.yaml`, section by section, with its type, default and meaning. This
page is generated from the schema (`impq/config.py`) each time the site is built. Every
section forbids unknown keys: a misspelt key is an error that names it. Checks that span
sections or registries (a backend's bits, a method's stage, an input path) run when the
file loads; the error names the key and the choices.
"""


class MissingDescriptionError(ValueError):
    """A key of the schema has no description for the params reference."""


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (also inside ``X | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _doc(model: type[BaseModel]) -> str:
    doc = model.__doc__  # its own, not one inherited from BaseModel as inspect.getdoc gives
    return " ".join(inspect.cleandoc(doc).split()).replace("``", "`") if doc else ""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = {
    annotated_types.Gt: ("gt", "> {}"),
    annotated_types.Ge: ("ge", "≥ {}"),
    annotated_types.Lt: ("lt", "< {}"),
    annotated_types.Le: ("le", "≤ {}"),
}


def _bounds(info: FieldInfo) -> str:
    out = []
    for meta in info.metadata:
        for kind, (attr, text) in _BOUNDS.items():
            if isinstance(meta, kind):
                out.append(text.format(getattr(meta, attr)))
        if isinstance(meta, annotated_types.MinLen):
            n = meta.min_length
            out.append("not empty" if n == 1 else f"at least {n} entries")
    return ", ".join(out)


def _default(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None:
        return "`null`"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join("null" if v is None else str(v) for v in value) + "]`"
    return f"`{value}`"


def schema_keys(
    model: type[BaseModel], prefix: str = ""
) -> Iterator[tuple[str, FieldInfo, type[BaseModel] | None]]:
    """Every key of ``model`` as ``(dotted key, field, section model or None)``, depth first."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _section_model(info.annotation)
        yield key, info, section
        if section is not None:
            yield from schema_keys(section, f"{key}.")


def _text(text: str | None) -> str:
    return " ".join((text or "").split()).replace("``", "`")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(key: str) -> str:
    return key.replace(".", "")


def render(root: type[BaseModel] | None = None) -> str:
    """The params reference in Markdown, one table per section.

    Args:
        root: the schema of the whole file; default ``impq.config.Params``.

    Raises:
        MissingDescriptionError: a key has no ``description`` (a section may use its
            model's docstring instead); the message lists every such key.
    """
    if root is None:
        from impq.config import Params

        root = Params
    keys = list(schema_keys(root))
    missing = [
        key
        for key, info, section in keys
        if not _text(info.description) and not (section is not None and _doc(section))
    ]
    if missing:
        raise MissingDescriptionError(
            f"params keys without a description: {', '.join(missing)}. Give each Field a "
            "description= in impq/config.py (a section may use its model's docstring)."
        )
    header = "| key | type | default | meaning |\n| --- | --- | --- | --- |"
    rows: dict[str, list[str]] = {"": []}
    intros: dict[str, str] = {"": ""}
    for key, info, section in keys:
        parent, _, name = key.rpartition(".")
        text = _text(info.description)
        if section is not None:
            rows[key] = []
            intros[key] = " ".join(t for t in (_doc(section), text) if t)
            kind = "section or null" if info.default is None else "section"
            see = f"see [{key}](#{_anchor(key)})"
            meaning = f"{_cell(text)} ({see})" if text else see.capitalize()
            rows[parent].append(f"| `{name}` | {kind} | {_default(info)} | {meaning} |")
            continue
        bounds = _bounds(info)
        kind = _type_name(info.annotation) + (f" ({bounds})" if bounds else "")
        rows[parent].append(f"| `{name}` | {kind} | {_default(info)} | {_cell(text)} |")
    out = [_INTRO]
    for section_key, lines in rows.items():
        out.append(f"## {section_key or 'Top level'}\n")
        if intros[section_key]:
            out.append(intros[section_key] + "\n")
        out.append("\n".join([header, *lines]) + "\n")
    return "\n".join(out)


def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated params reference to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files
