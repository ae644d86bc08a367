"""YAML for case files and ``known_discrepancies.yaml``: ``yaml.safe_load`` that refuses duplicate keys.

PyYAML keeps the last of two equal keys in one mapping without a word, so ``params: {eps: 1.0e-5,
eps: 1.0e-3}`` silently runs with 1.0e-3. :class:`UniqueKeyLoader` is PyYAML's ``SafeLoader``
(``!!python/...`` tags are still refused) that raises :class:`DuplicateKeyError` instead, naming the
key and where both occurrences are:

>>> yaml.load("params: {eps: 1.0e-5, eps: 1.0e-3}", Loader=UniqueKeyLoader)
Traceback (most recent call last):
...
normconf.yamlload.DuplicateKeyError: key 'eps' appears twice in one mapping (line 1, columns 10 and 23)

A ``<<: *anchor`` merge is not a duplicate: the mapping's own keys override the merged ones, as YAML
specifies.
"""
from __future__ import annotations

from collections.abc import Hashable

import yaml

_MERGE = "tag:yaml.org,2002:merge"
UNIQUE_KEYS = "each key once per mapping (PyYAML would silently keep the last value)"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key written twice in one mapping. ``key`` is its value, ``mapping`` the mapping node, ``first``
    and ``second`` the marks (0-based line and column) of the two occurrences."""

    def __init__(self, key, mapping: yaml.MappingNode, first: yaml.Mark, second: yaml.Mark):
        self.key, self.mapping, self.first, self.second = key, mapping, first, second
        self.path: str | None = None  # the dotted path of the key, set by load()
        super().__init__(None, None, duplicate_text(key, first, second), second)

    def __str__(self) -> str:  # the bare sentence: callers add the file, case and key path
        return self.problem


def duplicate_text(key, first: yaml.Mark, second: yaml.Mark) -> str:
    """``key 'eps' appears twice in one mapping (lines 3 and 5)``, with columns when on one line."""
    if first.line == second.line:
        where = f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"
    else:
        where = f"lines {first.line + 1} and {second.line + 1}"
    return f"key {key!r} appears twice in one mapping ({where})"


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that raises :class:`DuplicateKeyError` on a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            check_unique_keys(self, node)
        return super().construct_mapping(node, deep=deep)


def load(text: str):
    """``yaml.safe_load(text)`` with :class:`UniqueKeyLoader`; a :class:`DuplicateKeyError` carries the
    dotted ``path`` of the key from the document's root (``entries[2].cause``)."""
    loader = UniqueKeyLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        try:
            return loader.construct_document(root)
        except DuplicateKeyError as exc:
            exc.path = duplicate_key_path(exc, root)
            raise
    finally:
        loader.dispose()


def check_unique_keys(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """Raise :class:`DuplicateKeyError` if two keys of ``node`` (merge keys aside) are equal."""
    seen: dict[Hashable, yaml.Mark] = {}  # where each key was first written
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            continue  # SafeConstructor refuses it with its own message
        if key in seen:
            raise DuplicateKeyError(key, node, seen[key], key_node.start_mark)
        seen[key] = key_node.start_mark


def reset(loader: yaml.SafeLoader) -> None:
    """Forget a construction that raised half-way, so that the loader can construct other nodes.

    PyYAML leaves the failed nodes in ``recursive_objects``; constructing one of them again (an
    alias shared by two cases) would then report a bogus recursion instead of the real problem."""
    loader.recursive_objects.clear()
    loader.state_generators.clear()
    loader.deep_construct = False


def key_path(root: yaml.Node, target: yaml.Node, prefix: str = "") -> str | None:
    """The dotted path (``params.weight``, ``matrix.params.eps[1]``) from ``root`` to the node
    ``target``, or None when ``target`` is not under ``root``."""
    stack, seen = [(root, prefix)], set()
    while stack:
        node, path = stack.pop()
        if node is target:
            return path
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value_node, f"{path}.{name}" if path else str(name)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, f"{path}[{i}]"))
    return None


def duplicate_key_path(error: DuplicateKeyError, root: yaml.Node, prefix: str = "") -> str:
    """The dotted path of the duplicated key itself, e.g. ``params.eps``."""
    parent = key_path(root, error.mapping, prefix)
    name = str(error.key)
    if parent is None:
        return name
    return f"{parent}.{name}" if parent else name
