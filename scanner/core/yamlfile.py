"""Load untrusted YAML files strictly, remembering where every value came from.

Inventory, estate, policy and waiver files share this loader so they refuse the same things the
same way: duplicate keys, tags, anchors/aliases (no alias bombs), oversized files; and so every
validation error can name file:line:column.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from scanner.core import validation
from scanner.core.bounded import InputFileError, read_bounded
from scanner.core.errors import NattError

MAX_BYTES = 1024 * 1024  # far above any real policy; a 10 MB file is refused unread
Loc = tuple[str | int, ...]
SHALLOW_DEPTH = 2  # positions kept while loading: e.g. ("hosts", 17); deeper ones on demand
M = TypeVar("M", bound=BaseModel)


def place(path: str, line: int | None, column: int | None) -> str:
    """Return `path`, `path:line` or `path:line:column`: where a user looks for a problem."""
    return path if line is None else f"{path}:{line}" + (f":{column}" if column else "")


class FileError(NattError):
    """A file that cannot be used, with the place to look: path:line:column: message.

    `more` holds further problems of the same file, each already a whole `path:line: message`
    line: every validation error is listed, one per line (docs/policies.md).
    """

    def __init__(
        self, path: str, line: int | None, column: int | None, message: str, more: Sequence[str] = ()
    ) -> None:
        self.path, self.line, self.column, self.message = path, line, column, message
        self.more = tuple(more)
        super().__init__("\n".join((f"{place(path, line, column)}: {message}", *self.more)))


_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
}


def _mark(event: Any) -> tuple[int, int]:
    return (event.start_mark.line + 1, event.start_mark.column + 1)


class _Builder:
    """Build plain data straight from the parser's events, never holding a node tree.

    PyYAML's composer keeps a node (with marks) for every value of the document and its
    constructor caches every node: about 12 KB per inventory host, which was most of a
    10,000-host scan's peak memory (docs/performance.md). Each value here is built from its
    events and only its position is kept. Refused as before: anchors and aliases (no alias
    bombs), tags outside the YAML core schema, non-scalar or duplicate mapping keys.
    """

    def __init__(self, loader: Any, positions: dict[Loc, tuple[int, int]], depth: int | None = None) -> None:
        self.loader = loader
        self.positions = positions
        self.depth = depth  # record positions only this deep (None: all)

    def _next(self) -> Any:
        event = self.loader.get_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            problem = "anchors and aliases are not allowed"
            raise yaml.composer.ComposerError(None, None, problem, event.start_mark)
        return event

    def _scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        constructors = self.loader.yaml_constructors
        return constructors.get(tag, constructors[None])(self.loader, node)  # None: "undefined tag"

    def _tag(self, event: Any, kind: type[yaml.Node]) -> str:
        tag: str | None = getattr(event, "tag", None)
        if tag is None or tag == "!":
            value = event.value if isinstance(event, yaml.ScalarEvent) else None
            tag = self.loader.resolve(kind, value, event.implicit)
        assert tag is not None
        if tag not in _STANDARD_TAGS:
            line, column = _mark(event)
            raise FileError("", line, column, f"tag {tag!r} is not allowed")
        return tag

    def value(self, loc: Loc) -> Any:
        """Build the value whose first event comes next, recording its position under `loc`."""
        event = self._next()
        if self.depth is None or len(loc) <= self.depth:
            self.positions[loc] = _mark(event)
        if isinstance(event, yaml.ScalarEvent):
            self._tag(event, yaml.ScalarNode)
            return self._scalar(event)
        if isinstance(event, yaml.SequenceStartEvent):
            self._tag(event, yaml.SequenceNode)
            items: list[Any] = []
            while not self.loader.check_event(yaml.SequenceEndEvent):
                items.append(self.value((*loc, len(items))))
            self.loader.get_event()
            return items
        if isinstance(event, yaml.MappingStartEvent):
            self._tag(event, yaml.MappingNode)
            out: dict[Any, Any] = {}
            while not self.loader.check_event(yaml.MappingEndEvent):
                key_event = self._next()
                line, column = _mark(key_event)
                key = self._scalar(key_event) if isinstance(key_event, yaml.ScalarEvent) else None
                if not isinstance(key, str | int | bool | float) or key is None:
                    raise FileError("", line, column, "mapping keys must be scalars")
                if key in out:
                    raise FileError("", line, column, f"duplicate key {key!r}")
                out[key] = self.value((*loc, key if isinstance(key, str | int) else str(key)))
            self.loader.get_event()
            return out
        raise yaml.composer.ComposerError(None, None, f"unexpected {type(event).__name__}", event.start_mark)

    def document(self) -> tuple[bool, Any]:
        """Build the single document of the stream: (False, None) for an empty stream."""
        loader = self.loader
        loader.get_event()  # the StreamStartEvent
        if loader.check_event(yaml.StreamEndEvent):
            loader.get_event()
            return False, None
        loader.get_event()  # DocumentStartEvent
        data = self.value(())
        loader.get_event()  # DocumentEndEvent
        if not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()
            raise yaml.composer.ComposerError(
                "expected a single document in the stream",
                None,
                "but found another document",
                event.start_mark,
            )
        loader.get_event()
        return True, data


class YamlDocument:
    """Plain data from one YAML file plus the line and column of every value."""

    def __init__(
        self,
        path: str,
        data: Any,
        positions: dict[Loc, tuple[int, int]] | None = None,
        *,
        text: str = "",
        shallow: dict[Loc, tuple[int, int]] | None = None,
    ) -> None:
        self.path, self.data = path, data
        self._positions = positions
        self._text = text
        self._shallow = shallow or {}

    @property
    def sha256(self) -> str:
        """Return the SHA-256 (hex) of the file's text as read: its identity for `policy explain`."""
        return hashlib.sha256(self._text.encode("utf-8", "surrogatepass")).hexdigest()

    @property
    def positions(self) -> dict[Loc, tuple[int, int]]:
        """Return the line and column of every value, parsing the text again the first time."""
        # Positions are mostly needed to name the place of a problem. Kept for every value they
        # were most of a 10,000-host inventory's memory (docs/performance.md), so only the first
        # SHALLOW_DEPTH levels are kept (an inventory host's line) and the rest is rebuilt from
        # the same text, by the same parser, when first asked for.
        if self._positions is None:
            self._positions = {}
            loader = yaml.SafeLoader(self._text)
            try:
                _Builder(loader, self._positions).document()
            finally:
                loader.dispose()
        return self._positions

    def where(self, loc: Loc) -> tuple[int | None, int | None]:
        """Return the line and column of `loc`, or of its nearest known parent."""
        positions = self.positions if self._positions is not None or len(loc) > SHALLOW_DEPTH else self._shallow
        while loc:
            if loc in positions:
                return positions[loc]
            loc = loc[:-1]
        return positions.get((), (None, None))

    def validate(self, model: type[M]) -> M:
        """Validate against `model`, turning every error into one FileError line with file:line:col."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise self.error_from(exc, model=model) from None

    def problems(self, exc: ValidationError, prefix: Loc = (), model: Any = None) -> list[tuple[Loc, str]]:
        """Return every validation error as (location, `field: message`), in the order of the file."""
        found = []
        for loc, msg in validation.problems(exc, model):
            full = (*prefix, *loc)
            line, col = self.where(full)
            found.append(((line or 0, col or 0), full, f"{validation.dotted(full)}: {msg}"))
        found.sort(key=lambda item: item[0])  # stable: errors at one place keep pydantic's order
        return [(full, text) for _, full, text in found]

    def error_from(self, exc: ValidationError, prefix: Loc = (), model: Any = None) -> FileError:
        """Build a FileError listing every validation error, one `file:line:col: field: message` each."""
        lines = [(self.where(loc), text) for loc, text in self.problems(exc, prefix, model)]
        (line, col), first = lines[0]
        return FileError(self.path, line, col, first, [f"{place(self.path, *at)}: {text}" for at, text in lines[1:]])


def load_text(text: str, path: str, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Parse YAML text strictly; raise FileError with the position of the problem."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise FileError(path, None, None, f"file is larger than {max_bytes} bytes")
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # raised by the constructor: a control character in the text
        where = text.count("\n", 0, exc.position) + 1
        raise FileError(path, where, None, f"character U+{exc.character:04X} is not allowed") from None
    try:
        shallow: dict[Loc, tuple[int, int]] = {}
        _, data = _Builder(loader, shallow, SHALLOW_DEPTH).document()
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
    return YamlDocument(path, data, text=text, shallow=shallow)


def load_file(path: str | Path, *, max_bytes: int = MAX_BYTES) -> YamlDocument:
    """Read (at most `max_bytes` + 1 bytes of a regular file) and parse one YAML file."""
    p = Path(path)
    try:
        raw = read_bounded(p, max_bytes)
    except InputFileError as exc:
        raise FileError(str(p), None, None, exc.reason) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileError(str(p), None, None, f"not UTF-8 (byte {exc.start})") from None
    return load_text(text, str(p), max_bytes=max_bytes)
