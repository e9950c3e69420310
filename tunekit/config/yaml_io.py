"""Reading and writing config YAML safely, with YAML 1.2 scalars and line numbers.

PyYAML speaks YAML 1.1: `1e-4` loads as the string "1e-4", `on`/`no` as booleans, and a
duplicate key silently keeps the last value. All three are traps in a config file, so the
loader here resolves floats and booleans the YAML 1.2 way and rejects duplicate keys.
It only ever uses the safe constructor: a `!!python/...` tag is an error, never code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

import yaml

from tunekit.errors import ConfigError, DataError, Problem, UsageError

MAX_BYTES = 1_000_000  # a config is a page of text; anything bigger is a mistake or an attack
MAX_NODES = 100_000  # counted with aliases expanded: stops "billion laughs" documents

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"


class _Loader(yaml.SafeLoader):
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_FLOAT_TAG, _BOOL_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass
class Document:
    """A loaded YAML mapping plus the line of every dotted key, for error messages."""

    data: dict[str, Any]
    lines: dict[str, int] = field(default_factory=dict)
    source: str | None = None
    # Problems the parse found but could read past (a duplicate key: the last value is kept), so
    # they are reported with every other problem of the file instead of hiding them.
    problems: list[Problem] = field(default_factory=list)

    def line_of(self, path: str) -> int | None:
        # An error deep inside a value (model.hidden.2) falls back to its nearest known parent.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return None


def _problem(message: str, source: str | None, line: int | None = None, hint: str | None = None):
    return ConfigError([Problem("", message, line, hint)], source)


def _index(
    node: yaml.Node, prefix: str, lines: dict[str, int], budget: list[int], source: str | None, found: list[Problem]
) -> None:
    """Walk the composed node tree: record key lines, note duplicates in `found`, count nodes."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _problem(
            f"document expands to more than {MAX_NODES} nodes", source, hint="remove recursive aliases (&/*)"
        )
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            path = f"{prefix}.{key}" if prefix else key
            if key in seen:
                found.append(
                    Problem(path, f"duplicate key (first defined on line {seen[key]})", line, "keep one of them")
                )
                # YAML keeps the last value: its lines are the ones a later problem in it points at.
                for known in [k for k in lines if k == path or k.startswith(path + ".")]:
                    del lines[known]
            seen.setdefault(key, line)
            lines.setdefault(path, line)
            _index(value_node, path, lines, budget, source, found)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}.{i}" if prefix else str(i)
            lines.setdefault(path, item.start_mark.line + 1)
            _index(item, path, lines, budget, source, found)
    elif isinstance(node, yaml.ScalarNode) and node.style is None:
        _refuse_yaml_11_number(node, prefix, source)


# PyYAML reads YAML 1.1, where `1:30` is 90 (base 60) and `017` is 15 (octal); a reader of the
# file sees neither. Both are refused, unquoted, rather than given a meaning nobody meant.
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_OCTAL = re.compile(r"^[-+]?0[0-9_]+$")


def _refuse_yaml_11_number(node: yaml.ScalarNode, path: str, source: str | None) -> None:
    text = node.value
    if _SEXAGESIMAL.match(text):
        what = f"'{text}' is a base-60 number in YAML 1.1 (PyYAML would read it as {_base60(text)})"
        hint = "write the number you mean, or quote it to keep it a string"
    elif _OCTAL.match(text):
        what = f"'{text}' has a leading zero: YAML 1.1 reads it as an octal number"
        hint = f"write {text.lstrip('+-').lstrip('0_') or '0'} without the zero, or quote it to keep it a string"
    else:
        return
    raise ConfigError([Problem(path, what, node.start_mark.line + 1, hint)], source)


def _base60(text: str) -> str:
    sign = -1 if text.startswith("-") else 1
    value = 0.0
    for part in text.lstrip("+-").replace("_", "").split(":"):
        value = value * 60 + float(part)
    value *= sign
    return str(int(value)) if value == int(value) else str(value)


# What YAML refuses in a stream (tab, newline and carriage return are fine; NUL, ESC, BEL are not).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff]")


def parse_yaml(text: str, source: str | None = None) -> Document:
    """Parse one config document. Raises ConfigError (exit 3) with file:line on any problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise _problem(f"file is larger than {MAX_BYTES} bytes", source, hint="a config should be a page of YAML")
    if not text.strip():
        raise _problem("config is empty", source, hint="run `tunekit init` for a starter config")
    control = _CONTROL.search(text)
    if control:
        line = text.count("\n", 0, control.start()) + 1
        column = control.start() - (text.rfind("\n", 0, control.start()) + 1) + 1
        raise _problem(
            f"invalid YAML: column {column}: control character U+{ord(control.group()):04X} is not allowed",
            source,
            line,
            "remove it (a stray paste or terminal escape?)",
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise _problem("config is empty", source, hint="run `tunekit init` for a starter config")
        if not isinstance(node, yaml.MappingNode):
            raise _problem(
                "the top level must be a mapping of sections (data:, model:, ...)",
                source,
                node.start_mark.line + 1,
            )
        lines: dict[str, int] = {}
        found: list[Problem] = []
        _index(node, "", lines, [MAX_NODES], source, found)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = f" column {mark.column + 1}:" if mark else ""
        message = str(exc.problem or exc.context or "malformed YAML").strip()
        hint = None
        if "\t" in message or "\\t" in message:
            hint = "indent with spaces, not tabs"
        elif "could not determine a constructor" in message:
            message = f"tag not allowed {message.split('tag', 1)[-1].strip()}"
            hint = "configs are plain data; remove the !!tag"
        raise _problem(f"invalid YAML:{column} {message}", source, line, hint) from None
    except yaml.YAMLError as exc:
        raise _problem(f"invalid YAML: {str(exc).splitlines()[0]}", source) from None
    except RecursionError:
        raise _problem(
            "invalid YAML: nested too deeply", source, hint="a config nests a few levels, not hundreds"
        ) from None
    finally:
        loader.dispose()
    return Document(data, lines, source, found)


def read_yaml_file(path: str) -> Document:
    """Read a config file (or '-' for stdin) into a Document."""

    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(
                "reading the config from stdin, but stdin is a terminal", "pipe a config in: cat c.yaml | tunekit ... -"
            )
        raw = sys.stdin.buffer.read(MAX_BYTES + 1)
        source = "<stdin>"
    else:
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_BYTES + 1)
        except FileNotFoundError:
            raise DataError(f"config file not found: {path}", "check the path") from None
        except IsADirectoryError:
            raise DataError(f"config path is a directory: {path}", "give a .yaml file") from None
        except OSError as exc:
            raise DataError(f"cannot read config {path}: {exc.strerror}") from None
        source = path
    if len(raw) > MAX_BYTES:
        raise _problem(f"file is larger than {MAX_BYTES} bytes", source, hint="a config should be a page of YAML")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _problem("file is not valid UTF-8", source, line, "save the file as UTF-8") from None
    return parse_yaml(text, source)


def parse_scalar(text: str) -> Any:
    """Parse a `--set` value with the same YAML 1.2 rules as the file."""
    loader = _Loader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# libyaml's emitter writes the same text ~4x faster; every trial writes its config, so it counts.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump_yaml(data: Any) -> str:
    """Serialize plain config data; keeps key order so written configs read like the input."""
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
