"""YAML loading that remembers line numbers, so validation errors can point at ``file:line``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class LineDict(dict[str, Any]):
    """A mapping from YAML that knows its own line and the line of each key (1-based)."""

    line: int = 0
    key_lines: dict[str, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines = {}


class LineList(list[Any]):
    """A sequence from YAML that knows its own line and the line of each item (1-based)."""

    line: int = 0
    item_lines: list[int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_lines = []


class YamlLoadError(Exception):
    """The file is not valid YAML."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


class _MarkedLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _MarkedLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        value = loader.construct_object(value_node, deep=True)
        skey = key if isinstance(key, str) else str(key)
        out[skey] = value
        out.key_lines[skey] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _MarkedLoader, node: yaml.SequenceNode) -> LineList:
    out = LineList()
    out.line = node.start_mark.line + 1
    for child in node.value:
        out.append(loader.construct_object(child, deep=True))
        out.item_lines.append(child.start_mark.line + 1)
    return out


# YAML 1.1 reads on/off/yes/no as booleans; rules say `on: leave`, so only true/false are booleans.
_MarkedLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_MarkedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_MarkedLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_marked(text: str, path: str = "<string>") -> Any:
    """Parse YAML ``text`` into :class:`LineDict` / :class:`LineList` / scalars."""
    try:
        return yaml.load(text, Loader=_MarkedLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        hint = "check brackets, quotes and indentation on this line and the one before"
        raise YamlLoadError(path, line, f"invalid YAML: {exc.problem or exc}; {hint}") from exc
    except yaml.YAMLError as exc:
        raise YamlLoadError(path, 0, f"invalid YAML: {exc}") from exc


def load_marked_file(path: Path) -> Any:
    """Read and parse a YAML file keeping line numbers."""
    return load_marked(path.read_text(encoding="utf-8"), str(path))


def line_of(root: Any, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest node along ``loc`` (a pydantic error location) inside ``root``."""
    node = root
    line = getattr(root, "line", 0)
    for part in loc:
        if isinstance(node, LineDict) and isinstance(part, str) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
        inner = getattr(node, "line", 0)
        if inner and isinstance(node, LineList):
            line = inner
    return line


def plain(value: Any) -> Any:
    """Convert marked containers back to plain ``dict`` / ``list`` (for hashing and JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
