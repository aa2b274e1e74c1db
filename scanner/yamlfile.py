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
    """SafeLoader that refuses anchors and aliases while composing (no alias bombs)."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            problem = "anchors and aliases are not allowed"
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        return super().compose_node(parent, index)


_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


def _walk(loader: _StrictLoader, node: yaml.Node, loc: Loc, positions: dict[Loc, tuple[int, int]]) -> Any:
    positions[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _STANDARD_TAGS:
        mark = node.start_mark
        raise FileError("", mark.line + 1, mark.column + 1, f"tag {node.tag!r} is not allowed")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node)
            if not isinstance(key, str | int | bool | float) or key is None:
                mark = key_node.start_mark
                raise FileError("", mark.line + 1, mark.column + 1, "mapping keys must be scalars")
            if key in out:
                raise FileError(
                    "", key_node.start_mark.line + 1, key_node.start_mark.column + 1, f"duplicate key {key!r}"
                )
            child = (*loc, key if isinstance(key, str | int) else str(key))
            positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _walk(loader, value_node, child, positions)
            positions[child] = (value_node.start_mark.line + 1, value_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(loader, item, (*loc, i), positions) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


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


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and ("[" in part or part.startswith("function-"))


def _errors(exc: ValidationError) -> Iterator[tuple[Loc, str]]:
    for err in exc.errors(include_url=False):
        # pydantic appends union/tagged-union member names to loc; keep the real path parts only
        loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
        yield loc, err["msg"]


def load_text(text: str, path: str, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Parse YAML text strictly; raise FileError with the position of the problem."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FileError(path, None, None, f"file is larger than {max_bytes} bytes")
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:  # raised by the constructor: a control character in the text
        where = text.count("\n", 0, exc.position) + 1
        raise FileError(path, where, None, f"character U+{exc.character:04X} is not allowed") from None
    try:
        node = loader.get_single_node()
        positions: dict[Loc, tuple[int, int]] = {}
        data = _walk(loader, node, (), positions) if node is not None else None
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


def load_file(path: str | Path, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read and parse one YAML file, refusing it unread when it is too large."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > max_bytes:
            raise FileError(str(p), None, None, f"file is {size} bytes, over the {max_bytes}-byte limit")
        raw = p.read_bytes()
    except OSError as exc:
        raise FileError(str(p), None, None, exc.strerror or str(exc)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(str(p), None, None, f"not UTF-8 (byte {exc.start})") from None
    return load_text(text, str(p), max_bytes=max_bytes)
