"""The reference pages, generated from the code when the site is built (mkdocs-gen-files):

- ``reference/cli.md``: every ``magneto`` subcommand's ``--help``, from the real argparse parser;
- ``reference/http-api.md`` and ``reference/openapi.json``: the REST API, from the service's
  OpenAPI document (with the default limits);
- ``reference/python.md``: the public face, ``from magneto import ...``, from the docstrings.

So the reference cannot drift from ``--help``, ``/openapi.json`` or the code.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from collections.abc import Iterator
from typing import Any

os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal: a fixed width, fixed pages


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def commands(
    parser: argparse.ArgumentParser | None = None, prefix: str = "magneto"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``magneto train``, its parser) for the command and every subcommand, depth first."""
    if parser is None:
        from magneto.cli.main import build_parser

        parser = build_parser()
    yield prefix, parser
    for name, sub in _subcommands(parser).items():
        yield from commands(sub, f"{prefix} {name}")


def _anchor(command: str) -> str:
    return command.replace(" ", "-")


def cli_markdown() -> str:
    found = list(commands())
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `magneto` command's own parser when this site was built: each",
        "section is exactly what `--help` prints. [The command line](../cli.md) explains the",
        "conventions (errors, exit statuses, configs).",
        "",
    ]
    lines += [f"- [`{command}`](#{_anchor(command)})" for command, _ in found[1:]]
    for command, parser in found:
        lines += ["", f"## `{command}` {{#{_anchor(command)}}}", "", "```text"]
        lines += [parser.format_help().rstrip(), "```"]
    return "\n".join(lines) + "\n"


def openapi() -> dict[str, Any]:
    from magneto.service.app import create_app
    from magneto.service.settings import ServiceSettings

    return create_app(ServiceSettings(checkpoint=None)).openapi()


def _schema_type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_schema_type(s) for s in schema[key])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " / ".join(f"`{v}`" for v in schema["enum"])
    return str(kind)


def _limits(schema: dict[str, Any]) -> str:
    names = {
        "minimum": "≥",
        "exclusiveMinimum": ">",
        "maximum": "≤",
        "exclusiveMaximum": "<",
        "minLength": "length ≥",
        "maxLength": "length ≤",
        "minItems": "items ≥",
        "maxItems": "items ≤",
    }
    parts = [f"{label} {schema[key]}" for key, label in names.items() if key in schema]
    for option in schema.get("anyOf", []):
        if _limits(option):
            parts.append(_limits(option))
    return ", ".join(parts)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def http_markdown(document: dict[str, Any]) -> str:
    lines = [
        "# HTTP API reference",
        "",
        "Generated from the service's OpenAPI document when this site was built (the default",
        "limits; a server started with other limits documents its own at `/openapi.json`,",
        "`/docs` and `/redoc`). The whole document: [openapi.json](openapi.json).",
        "[The REST API](../api.md) explains the conventions with examples.",
        "",
        "## Endpoints",
    ]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            lines += ["", f"### `{method.upper()} {path}`", ""]
            if operation.get("summary"):
                lines += [f"**{operation['summary']}**", ""]
            if operation.get("description"):
                lines += [operation["description"].strip(), ""]
            params = operation.get("parameters", [])
            if params:
                lines += ["| parameter | in | type | required | limits | description |"]
                lines += ["|---|---|---|---|---|---|"]
                for p in params:
                    schema = p.get("schema", {})
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {_cell(_schema_type(schema))} | "
                        f"{'yes' if p.get('required') else 'no'} | {_cell(_limits(schema))} | "
                        f"{_cell(p.get('description', schema.get('description', '')))} |"
                    )
                lines.append("")
            body = operation.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                schema = content.get("schema", {})
                title = schema.get("title", _schema_type(schema))
                lines += [f"Request body `{media}` ({title}):", ""]
                lines += _fields(schema) if schema.get("properties") else [_schema_type(schema)]
                lines.append("")
            lines += ["| status | meaning | body |", "|---|---|---|"]
            for status, response in operation.get("responses", {}).items():
                schemas = [
                    _schema_type(c.get("schema", {}))
                    for c in response.get("content", {}).values()
                    if c.get("schema")
                ]
                lines.append(
                    f"| {status} | {_cell(response.get('description', ''))} | "
                    f"{_cell(', '.join(schemas))} |"
                )
    lines += ["", "## Schemas"]
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        lines += ["", f"### {name} {{#{name.lower()}}}", ""]
        if schema.get("description"):
            lines += [schema["description"].strip(), ""]
        lines += _fields(schema) if schema.get("properties") else [f"Type: {_schema_type(schema)}."]
    return "\n".join(lines) + "\n"


def _fields(schema: dict[str, Any]) -> list[str]:
    """A table of an object schema's fields."""
    required = set(schema.get("required", []))
    lines = ["| field | type | required | limits | description |", "|---|---|---|---|---|"]
    for field, spec in schema["properties"].items():
        lines.append(
            f"| `{field}` | {_cell(_schema_type(spec))} | "
            f"{'yes' if field in required else 'no'} | {_cell(_limits(spec))} | "
            f"{_cell(spec.get('description', ''))} |"
        )
    return lines


def python_markdown() -> str:
    import magneto

    lines = [
        "# Python reference",
        "",
        "The public face: every name below imports from `magneto` itself",
        "(`from magneto import Predictor`), each defined in the module named beside it.",
        "Generated from the code's signatures and docstrings when this site was built.",
    ]
    for name in (n for n in magneto.__all__ if n != "__version__"):
        value = getattr(magneto, name)
        lines += ["", f"## `{name}`", "", f"`{value.__module__}.{name}`", ""]
        try:
            signature = str(inspect.signature(value))
        except (TypeError, ValueError):
            signature = ""
        if signature:
            lines += ["```python", f"{name}{signature}", "```", ""]
        lines.append(inspect.cleandoc(value.__doc__ or "").strip())
        if inspect.isclass(value):
            for member, attr in vars(value).items():
                if member.startswith("_") or (
                    not callable(attr)
                    and not isinstance(attr, (classmethod, staticmethod, property))
                ):
                    continue
                function = attr.__func__ if isinstance(attr, (classmethod, staticmethod)) else attr
                doc = inspect.getdoc(function)
                if not doc or isinstance(attr, property):
                    continue
                try:
                    shown = f"{member}{inspect.signature(function)}"
                except (TypeError, ValueError):
                    shown = member
                lines += ["", f"- `{shown}`: {doc.splitlines()[0]}"]
    return "\n".join(lines) + "\n"


def write_pages() -> None:
    import mkdocs_gen_files

    with mkdocs_gen_files.open("reference/cli.md", "w") as handle:
        handle.write(cli_markdown())
    document = openapi()
    with mkdocs_gen_files.open("reference/openapi.json", "w") as handle:
        json.dump(document, handle, indent=2)
    with mkdocs_gen_files.open("reference/http-api.md", "w") as handle:
        handle.write(http_markdown(document))
    with mkdocs_gen_files.open("reference/python.md", "w") as handle:
        handle.write(python_markdown())


if __name__ in ("__main__", "<run_path>"):  # run by mkdocs-gen-files (runpy.run_path)
    write_pages()
