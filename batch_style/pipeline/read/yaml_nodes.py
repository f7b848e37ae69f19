"""YAML read as plain data in nodes that keep their line numbers, every problem collected."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from batch_style.errors import UserError
from batch_style.settings import FIELDS, did_you_mean

MAX_MANIFEST_BYTES = 10 * 2**20  # a manifest is a page of text; this is not one
# Values a document may hold once its aliases are expanded: `&a [*b, *b, ...]` chains (the
# "billion laughs") stay small as nodes but would blow up every repr() and loop over them.
MAX_VALUES = 1_000_000
TAG = "tag:yaml.org,2002:"
MAP, SEQ, NULL, MERGE = (TAG + t for t in ("map", "seq", "null", "merge"))
# Tags SafeConstructor builds plain data from; anything else (!!python/..., !custom) is refused.
_SAFE_TAGS = frozenset(t for t in SafeConstructor.yaml_constructors if t is not None)
INVALID = object()  # a value already reported as a problem


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads 1e4 and 1.0e4 as numbers.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent, so the natural
    `content_weight: 1.0e4` would be the text '1.0e4'. YAML 1.2 (and every user) says number.
    """


_Loader.add_implicit_resolver(
    TAG + "float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def read_text(file: Path, shown: str) -> str:
    if file.is_dir():
        raise UserError("is a folder; expected a YAML manifest", file=shown)
    if file.exists() and not file.is_file():  # a FIFO would block for good, a device never end
        raise UserError("is not a regular file; expected a YAML manifest", file=shown)
    try:
        with open(file, "rb") as f:  # capped: a file can still grow while it is read
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise UserError("no such file", file=shown) from None
    except OSError as error:
        raise UserError(f"cannot read: {error.strerror}", file=shown) from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise UserError(f"larger than {MAX_MANIFEST_BYTES // 2**20} MB; expected a YAML manifest",
                        file=shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError("not UTF-8 text; a manifest is a YAML text file", file=shown,
                        line=line) from None


def compose(text: str, shown: str) -> Node | None:
    """The YAML node tree, which keeps the line of every value (yaml.load would lose them)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except RecursionError:  # PyYAML composes recursively: [[[[...]]]] a few hundred deep
        raise UserError("invalid YAML: nested too deeply", file=shown) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        message = f"invalid YAML: {error.problem or error.context}"
        if error.context and error.context_mark and error.context_mark.line != mark.line:
            message += f" ({error.context} on line {error.context_mark.line + 1})"
        raise UserError(message, file=shown, line=mark.line + 1) from None
    except yaml.reader.ReaderError as error:
        line = text[:error.position].count("\n") + 1
        raise UserError(f"invalid YAML: {error.reason} (character {error.character!r})",
                        file=shown, line=line) from None
    problem = _alias_problem(root) if root is not None else None
    if problem is not None:
        node, message = problem
        raise UserError(f"invalid YAML: {message}", file=shown, line=line_of(node))
    return root


def _alias_problem(root: Node) -> tuple[Node, str] | None:
    """An alias that contains itself, or more than MAX_VALUES values once aliases are expanded.

    Depth-first over the node graph, each node once, counting the values under it with aliases
    expanded (a node met again is shared, not copied, so its count is reused).
    """
    counts: dict[int, int] = {}  # finished nodes: values under them, expanded
    open_nodes: set[int] = set()  # on the current path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = (node.value if isinstance(node, SequenceNode) else
                    [n for pair in node.value for n in pair] if isinstance(node, MappingNode)
                    else [])
        if finished:
            open_nodes.discard(id(node))
            counts[id(node)] = 1 + sum(counts[id(child)] for child in children)
            if counts[id(node)] > MAX_VALUES:
                return node, (f"its aliases expand to more than {MAX_VALUES:,} values; "
                              f"a manifest is not that big")
            continue
        if id(node) in counts:
            continue
        if id(node) in open_nodes:
            return node, "an alias refers to a value that contains it"
        open_nodes.add(id(node))
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))
    return None


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def got(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"got {text} ({type(value).__name__})"


def describe(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == NULL:
        return "nothing"
    return repr(node.value) if node.tag == TAG + "str" else node.value


def is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _unsafe_tag(node: Node) -> Node | None:
    """The first node under `node` with a tag that would build something other than plain data."""
    stack, seen = [node], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases can make the tree a graph, even a cyclic one
            continue
        seen.add(id(node))
        if node.tag not in _SAFE_TAGS and node.tag != MERGE:
            return node
        if isinstance(node, SequenceNode):
            stack.extend(reversed(node.value))
        elif isinstance(node, MappingNode):
            stack.extend(n for pair in reversed(node.value) for n in reversed(pair))
    return None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(TAG):] if tag.startswith(TAG) else tag


def scalar_entry(node: Node, key: str) -> str | None:
    """The text value of `key` in a mapping node, without checking anything else."""
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key and \
                    isinstance(value_node, ScalarNode) and value_node.tag == TAG + "str":
                return value_node.value
    return None


class Nodes:
    """Reads one manifest's nodes, collecting every problem instead of stopping at the first."""

    def __init__(self, shown: str):
        self.shown = shown      # the manifest's path as the user wrote it, for messages
        self.errors: list[UserError] = []

    def error(self, where: Node | int, field: str, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.errors.append(UserError(message, file=self.shown, line=line, field=field or None))

    def value(self, node: Node, field: str) -> Any:
        """The plain data of a node, or INVALID (reported) when a tag would build an object."""
        bad = _unsafe_tag(node)
        if bad is not None:
            self.error(bad, field, f"YAML tag {_short_tag(bad.tag)!r} is not allowed; "
                       "a manifest holds plain data only")
            return INVALID
        try:
            return SafeConstructor().construct_document(node)
        except ConstructorError as error:  # e.g. a malformed !!timestamp or !!binary
            mark = error.problem_mark or node.start_mark
            self.error(mark.line + 1, field, f"invalid value: {error.problem}")
            return INVALID

    def entries(self, node: Node, field: str, allowed: Iterable[str] | None, expected: str,
                merging: frozenset[int] = frozenset(), settings_under: str | None = None
                ) -> dict[str, tuple[Node, Node]] | None:
        """A mapping node's (key node, value node) by key; reports bad, duplicate, unknown keys.

        `<<: *anchor` merge keys are honoured (keys written here win over merged ones);
        `merging` holds the mappings being merged already, as an anchor can merge itself.
        `settings_under`: the key a setting written here belongs under (a job's `settings`).
        """
        if not isinstance(node, MappingNode) or node.tag != MAP:
            tag = "" if node.tag in _SAFE_TAGS else f" tagged {_short_tag(node.tag)!r}"
            self.error(node, field, f"expected {expected}, got {describe(node)}{tag}")
            return None
        out: dict[str, tuple[Node, Node]] = {}
        merged: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged += value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                continue
            key = self.value(key_node, field)
            if key is INVALID:
                continue
            sub = f"{field}.{key}" if field else str(key)
            if not isinstance(key, str):
                self.error(key_node, field, f"expected text keys, {got(key)}")
            elif key in out:
                self.error(key_node, sub, f"duplicate key (first on line {line_of(out[key][0])})")
            elif allowed is not None and key not in allowed and settings_under and \
                    key in FIELDS:
                self.error(key_node, sub, f"a setting: put it under `{settings_under}:`")
            elif allowed is not None and key not in allowed:
                self.error(key_node, sub, f"unknown key{did_you_mean(key, allowed)}; "
                           f"expected one of {', '.join(allowed)}")
            else:
                out[key] = (key_node, value_node)
        merging |= {id(node)}
        for source in merged:
            if id(source) in merging:
                continue
            source_entries = self.entries(source, field, allowed, expected, merging,
                                          settings_under) or {}
            for key, pair in source_entries.items():
                out.setdefault(key, pair)
        return out

    def items(self, node: Node, field: str) -> list[tuple[Node, str]]:
        """(node, field) of each element of a list, or of the value itself when it is not a list."""
        if isinstance(node, SequenceNode) and node.tag == SEQ:
            return [(item, f"{field}[{i}]") for i, item in enumerate(node.value)]
        return [(node, field)]
