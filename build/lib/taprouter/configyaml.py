"""Reading a config file's YAML: bounded size, nesting and values; duplicate keys found; dpids as written.

yaml.safe_load is not used: it lets a second key silently replace the first, reads an Open vSwitch
dpid such as 0000000000000010 as octal, recurses once per level of nesting (a few KB of brackets
raise RecursionError) and expands aliases in full (a few hundred bytes become millions of values).
Instead the file is parsed once as events to bound its nesting (the parser is iterative), then
composed into nodes, which keep each key's line and each scalar's text as written and share an
aliased node rather than copy it, and the nodes are walked here with a budget of values.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20  # a taprouter config is a few KB
MAX_DEPTH = 32  # a taprouter config nests 6 levels deep
MAX_VALUES = 200_000  # values walked, each use of an alias counted anew
SHOWN = 40  # characters of a value from the file that a message shows
SHOWN_PATH = 120  # characters of a path from the file that a message shows (its end)

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: same results, faster

_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_NULL = "tag:yaml.org,2002:null"

_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")

ANY = object()  # matches any key in a path pattern
# Scalars kept as the text the user wrote (None when empty or null): YAML 1.1 would misread a dpid.
RAW_TEXT = (("routers", ANY, "dpid"),)
# Mappings whose keys are numbers: 1 and "1" are the same key there.
NUMBERED = (("routers", ANY, "ports"),)


@dataclass(frozen=True)
class Bounds:
    """How much of a file `read` takes, and what a file of that kind usually holds (for messages)."""
    max_bytes: int
    max_depth: int
    max_values: int
    kind: str  # "a taprouter config"
    usual_size: str  # "a config file is a few KB"
    usual_depth: int  # the levels such a file nests
    usual_values: str  # "a few hundred"

    def too_large(self) -> str:
        return f"is larger than {self.max_bytes // 1024} KiB, the most taprouter reads: {self.usual_size}"

    def too_deep(self, how: str = "") -> str:
        return f"nested more than {self.max_depth} levels deep{how}; {self.kind} nests {self.usual_depth}"

    def too_many(self) -> str:
        return (f"more than {self.max_values} values, counting each use of an alias; {self.kind} has "
                f"{self.usual_values}")


CONFIG = Bounds(MAX_BYTES, MAX_DEPTH, MAX_VALUES, "a taprouter config", "a config file is a few KB", 6,
                "a few hundred")


class FileProblem(Exception):
    """The file cannot be read as a config at all; the message says where and why."""


@dataclass(frozen=True)
class OddKey:
    """A key that YAML reads as neither text nor an integer (true, 1.5, null, a date), kept with
    its text as written so that a message can show the key the user typed."""
    text: str
    kind: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Index:
    """A position in a list, within a key path."""
    number: int


@dataclass(frozen=True)
class Document:
    data: Any
    problems: tuple[tuple[str, str], ...]  # (key, problem): duplicate keys


def clip(text: str, limit: int = SHOWN) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shown(value: Any) -> str:
    """A value from the file for a message: quoted text, YAML's words for the rest, never long."""
    if isinstance(value, str):
        return repr(clip(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float, OddKey, datetime.date)):
        return clip(str(value))
    return f"a {kind(value)}"


def shown_path(path: Path | str) -> str:
    text = str(path)
    return text if len(text) <= SHOWN_PATH else "…" + text[-(SHOWN_PATH - 1):]


def kind(value: Any) -> str:
    """What YAML made of a value, in the user's words."""
    if isinstance(value, OddKey):
        return value.kind
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, (datetime.date, datetime.datetime)):
        return "date"
    if isinstance(value, bytes):
        return "binary"
    return type(value).__name__


def key_path(*parts: Any) -> str:
    """routers.r1.ports.1.addresses[0]: each part as written, and short."""
    text = ""
    for part in parts:
        text = child(text, part)
    return text


def child(where: str, part: Any) -> str:
    """The key path `where` (already written out) and one more part: quoted when it is text with
    more than letters, digits, '_' and '-' (routers.'..', not routers...)."""
    if isinstance(part, Index):
        return f"{where}[{part.number}]"
    if isinstance(part, str) and not _BARE_KEY.fullmatch(part):
        part = repr(clip(part))
    return f"{where}.{clip(str(part))}" if where else clip(str(part))


def read(path: Path, bounds: Bounds = CONFIG) -> Document:
    """The file's YAML as plain values; FileProblem if it cannot be a config (or whatever `bounds`
    describes) at all."""
    text = _text(path, bounds)
    _bound_nesting(text, bounds)
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        raise FileProblem(_yaml_problem(exc, bounds, text)) from None
    if node is None:
        return Document(None, ())
    walk = _Walk(bounds)
    data = walk.value(node, (), 1)
    return Document(data, tuple(walk.problems.values()))


def _text(path: Path, bounds: Bounds) -> str:
    limit = bounds.max_bytes
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(limit + 1) if size <= limit else b""
    except OSError as exc:
        raise FileProblem(f"cannot read: {exc.strerror}") from None
    if size > limit or len(data) > limit:
        raise FileProblem(bounds.too_large())
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start:exc.start].decode("utf-8", errors="replace")) + 1
        raise FileProblem(f"line {line}, column {column}: byte 0x{data[exc.start]:02x} is not UTF-8 text") \
            from None


def _bound_nesting(text: str, bounds: Bounds) -> None:
    """Nesting and values counted on the event stream, before any node is made."""
    depth = values = 0
    try:
        for event in yaml.parse(text, Loader=Loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > bounds.max_depth:
                    raise FileProblem(f"{_at(event.start_mark)}: {bounds.too_deep()}")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
                continue
            elif not isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent)):
                continue
            values += 1
            if values > bounds.max_values:
                raise FileProblem(f"{_at(event.start_mark)}: {bounds.too_many()}")
    except yaml.YAMLError as exc:
        raise FileProblem(_yaml_problem(exc, bounds, text)) from None


def _at(mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(exc: yaml.YAMLError, bounds: Bounds, text: str = "") -> str:
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, such as NUL
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        return f"line {line}, column {column}: character {exc.character!r} is not allowed in YAML"
    mark = getattr(exc, "problem_mark", None)
    problem = " ".join((getattr(exc, "problem", None) or str(exc)).split())
    if "maximum nesting depth" in problem:
        # libyaml's own bound (1000 levels), met while it reads ahead of the events counted here.
        return f"{_at(mark) if mark else 'YAML'}: {bounds.too_deep()}"
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark:  # e.g. "while parsing a flow mapping", where that mapping opened
        problem = f"{context} ({_at(context_mark)}): {problem}"
    return f"{_at(mark) if mark else 'YAML'}: {clip(problem, 200)}"


def _matches(path: tuple, patterns: tuple[tuple, ...]) -> bool:
    return any(len(path) == len(p) and all(want is ANY or want == got for want, got in zip(p, path))
               for p in patterns)


class _Walk:
    """Nodes to plain values: dicts, lists, and the scalars yaml.safe_load would make."""

    def __init__(self, bounds: Bounds) -> None:
        self.bounds = bounds
        self.visits = 0
        self.problems: dict[tuple[int, int], tuple[str, str]] = {}  # by the lines of the two keys
        self._constructor = yaml.constructor.SafeConstructor()

    def _count(self, node: Node, depth: int) -> None:
        self.visits += 1
        if self.visits > self.bounds.max_values:
            raise FileProblem(f"{_at(node.start_mark)}: {self.bounds.too_many()}")
        if depth > self.bounds.max_depth:  # aliases and merges can nest what the text does not
            raise FileProblem(f"{_at(node.start_mark)}: {self.bounds.too_deep(' through aliases')}")

    def value(self, node: Node, path: tuple, depth: int) -> Any:
        self._count(node, depth)
        if isinstance(node, ScalarNode):
            if _matches(path, RAW_TEXT):
                return None if node.tag == _NULL else node.value
            return self._scalar(node)
        if isinstance(node, SequenceNode):
            self._tag(node, _SEQ, "a list")
            return [self.value(item, path + (Index(i),), depth + 1) for i, item in enumerate(node.value)]
        self._tag(node, _MAP, "a mapping")
        return self._mapping(node, path, depth)

    def _scalar(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise FileProblem(_yaml_problem(exc, self.bounds)) from None

    @staticmethod
    def _tag(node: Node, tag: str, what: str) -> None:
        if node.tag != tag:
            raise FileProblem(f"{_at(node.start_mark)}: the tag {clip(node.tag)} is not supported here, "
                              f"where {what} is")

    def _key(self, node: Node, path: tuple) -> Any:
        if not isinstance(node, ScalarNode):
            raise FileProblem(f"{_at(node.start_mark)}: {key_path(*path) or 'the top level'}: a key must be "
                              "text or a number, not a list or a mapping")
        self._count(node, 0)
        value = self._scalar(node)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return OddKey(node.value, kind(value))
        return value

    def _mapping(self, node: MappingNode, path: tuple, depth: int) -> dict:
        numbered = _matches(path, NUMBERED)
        result: dict = {}
        lines: dict[Any, int] = {}  # a key's identity: the line it is on
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = self._key(key_node, path)
            identity = _identity(key, numbered)
            line = key_node.start_mark.line + 1
            if identity in lines:
                first = lines[identity]
                self.problems[(first, line)] = (key_path(*path, key), f"duplicate key, on lines {first} and "
                                                f"{line}: YAML would keep only the second; keep one")
                continue
            lines[identity] = line
            result[key] = self.value(value_node, path + (key,), depth + 1)
        # "<<: *defaults": the keys written here win, then earlier merged mappings over later ones.
        for merge in merges:
            sources = merge.value if isinstance(merge, SequenceNode) else [merge]
            for source in sources:
                if not isinstance(source, MappingNode):
                    raise FileProblem(f"{_at(source.start_mark)}: a merge (<<) takes a mapping or a list "
                                      "of mappings")
                self._count(source, depth + 1)
                self._tag(source, _MAP, "a mapping")
                for key, value in self._mapping(source, path, depth + 1).items():
                    identity = _identity(key, numbered)
                    if identity not in lines:
                        lines[identity] = 0
                        result[key] = value
        return result


def _identity(key: Any, numbered: bool) -> Any:
    if numbered and isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    return key
