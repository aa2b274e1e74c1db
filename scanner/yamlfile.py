"""Load untrusted YAML files strictly, remembering where every value came from.

Inventory, estate, policy and waiver files share this loader so they refuse the same things the
same way: duplicate keys, tags, anchors/aliases (no alias bombs), oversized files; and so every
validation error can name file:line:column.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

MAX_BYTES = 1024 * 1024  # far above any real policy; a 10 MB file is refused unread
Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class FileError(Exception):
    """A file that cannot be used, with the place to look: path:line:column: message."""

    def __init__(self, path: str, line: int | None, column: int | None, message: str) -> None:
        self.path, self.line, self.column, self.message = path, line, column, message
        where = path if line is None else f"{path}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases, custom tags or duplicate keys."""


def _refuse_alias(loader: _StrictLoader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(None, None, "tags are not allowed", node.start_mark)


def _compose_node(self: _StrictLoader, parent: Any, index: Any) -> Any:
    if self.check_event(yaml.AliasEvent):
        event = self.peek_event()
        raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed", event.start_mark)
    event = self.peek_event()
    anchor = getattr(event, "anchor", None)
    if anchor is not None:
        raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed", event.start_mark)
    return yaml.SafeLoader.compose_node(self, parent, index)


_StrictLoader.compose_node = _compose_node  # type: ignore[method-assign]
_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


def _walk(node: yaml.Node, loc: Loc, positions: dict[Loc, tuple[int, int]]) -> Any:
    positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _STANDARD_TAGS:
        raise FileError("", node.start_mark.line + 1, node.start_mark.column + 1, f"tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _StrictLoader.construct_object(_LOADER_FOR_SCALARS, key_node)  # type: ignore[arg-type]
            if not isinstance(key, str | int | bool | float) or key is None:
                raise FileError("", key_node.start_mark.line + 1, key_node.start_mark.column + 1, "mapping keys must be scalars")
            if key in out:
                raise FileError(
                    "", key_node.start_mark.line + 1, key_node.start_mark.column + 1, f"duplicate key {key!r}"
                )
            child = (*loc, key if isinstance(key, str | int) else str(key))
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _walk(value_node, child, positions)
            positions[child] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(item, (*loc, i), positions) for i, item in enumerate(node.value)]
    return _LOADER_FOR_SCALARS.construct_object(node)  # type: ignore[arg-type]


_LOADER_FOR_SCALARS = yaml.SafeLoader("")


class YamlDocument:
    """Plain data from one YAML file plus the line and column of every value."""

    def __init__(self, path: str, data: Any, positions: dict[Loc, tuple[int, int]]) -> None:
        self.path, self.data, self.positions = path, data, positions

    def where(self, loc: Loc) -> tuple[int | None, int | None]:
        """Return the line and column of `loc`, or of its nearest known parent."""
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (None, None))

    def validate(self, model: type[M]) -> M:
        """Validate against `model`, turning the first errors into a FileError with file:line:col."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise self.error_from(exc) from None

    def error_from(self, exc: ValidationError, prefix: Loc = ()) -> FileError:
        """Build a FileError naming the place and the field of the first validation error."""
        errors = list(_errors(exc))
        loc, msg = errors[0]
        full = (*prefix, *loc)
        line, col = self.where(full)
        field = ".".join(str(p) for p in full) or "(document)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return FileError(self.path, line, col, f"{field}: {msg}{more}")


def _errors(exc: ValidationError) -> Iterator[tuple[Loc, str]]:
    for err in exc.errors(include_url=False):
        # pydantic appends union/tagged-union member names to loc; keep the real path parts only
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        yield loc, err["msg"]


def load_text(text: str, path: str) -> YamlDocument:
    """Parse YAML text strictly; raise FileError with the position of the problem."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise FileError(path, None, None, f"file is larger than {MAX_BYTES} bytes")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        positions: dict[Loc, tuple[int, int]] = {}
        data = _walk(node, (), positions) if node is not None else None
    except FileError as exc:
        raise FileError(path, exc.line, exc.column, exc.message) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise FileError(path, line, col, str(exc.problem or exc.context or "invalid YAML")) from None
    except yaml.YAMLError as exc:
        raise FileError(path, None, None, f"invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return YamlDocument(path, data, positions)


def load_file(path: str | Path) -> YamlDocument:
    """Read and parse one YAML file, refusing it unread when it is too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise FileError(str(p), None, None, f"file is {size} bytes, larger than the {MAX_BYTES}-byte limit")
        raw = p.read_bytes()
    except OSError as exc:
        raise FileError(str(p), None, None, exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(str(p), None, None, f"not UTF-8 (byte {exc.start})") from None
    return load_text(text, str(p))
