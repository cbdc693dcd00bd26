"""YAML as operators write it: the one loader of the project's YAML files (region files, the
residency policy, the apps file).

PyYAML's `safe_load` reads YAML 1.1, where an unquoted `NO` (Norway), `ON`, `yes` or `off` is
a boolean and `2024-02-30` a date (or a ValueError). `load` reads the data types of YAML 1.2's
core schema and nothing else:

- booleans are `true` and `false` only (`True`, `TRUE`, `False`, `FALSE` too): `country: NO`
  is the string "NO", `all: yes` the string "yes";
- null, integers (also 0x, 0o/0 octal, 0b and YAML 1.1's 1:30 base 60), floats (also .inf,
  .nan), strings, lists and mappings; a date is a string;
- no other tags (`!!binary`, `!!set`, `!!timestamp`, `!!omap`, `!!python/...`): refused;
- a value that contains itself (`a: &a [*a]`), or aliases that expand to more than
  `MAX_VALUES` values (the "billion laughs"), or nesting deeper than Python can read: refused.

Every refusal is a `yaml.YAMLError` (a `yaml.MarkedYAMLError`, with line and column, where
the problem has a place), so callers catch one exception type. Pure: text in, data out.
"""

from __future__ import annotations

import re

import yaml

MAX_VALUES = 100_000  # values a document may expand to through aliases

_BOOL = "tag:yaml.org,2002:bool"
_DROPPED_RESOLVERS = {_BOOL, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}
_KEPT_TAGS = {"null", "bool", "int", "float", "str", "seq", "map"}


class Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans, no timestamps and no tags beyond the core
    schema's; a malformed scalar under an explicit tag (`!!int abc`) is a ConstructorError."""

    def _scalar(self, node: yaml.Node, construct, what: str):
        try:
            return construct(self, node)
        except (ValueError, KeyError, OverflowError):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} is not a valid {what}", node.start_mark) from None

    def construct_yaml_bool(self, node: yaml.Node) -> bool:
        return self._scalar(node, yaml.SafeLoader.construct_yaml_bool, "boolean")

    def construct_yaml_int(self, node: yaml.Node) -> int:
        return self._scalar(node, yaml.SafeLoader.construct_yaml_int, "integer")

    def construct_yaml_float(self, node: yaml.Node) -> float:
        return self._scalar(node, yaml.SafeLoader.construct_yaml_float, "float")


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                             list("tTfF"))
Loader.yaml_constructors = {
    tag: constructor for tag, constructor in yaml.SafeLoader.yaml_constructors.items()
    if tag is None or tag.removeprefix("tag:yaml.org,2002:") in _KEPT_TAGS
}
Loader.add_constructor(f"{_BOOL}", Loader.construct_yaml_bool)
Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
Loader.add_constructor("tag:yaml.org,2002:float", Loader.construct_yaml_float)
# `<<` is a merge key as a key; as a value it is the text it says
Loader.add_constructor("tag:yaml.org,2002:merge", yaml.SafeLoader.construct_scalar)


def load(text: str) -> object:
    """The data of one YAML document; yaml.YAMLError for anything that is not plain data."""
    loader = Loader(text)
    try:
        data = loader.get_single_data()
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()
    _check_size(data)
    return data


def _check_size(data: object) -> None:
    """YAMLError when `data` contains itself or expands to more than MAX_VALUES values."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(value: object) -> int:
        if isinstance(value, dict):
            children = [x for item in value.items() for x in item]
        elif isinstance(value, list):
            children = value
        else:
            return 1
        key = id(value)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise yaml.YAMLError("a value contains itself (a recursive alias)")
        open_.add(key)
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                raise yaml.YAMLError(f"aliases expand to more than {MAX_VALUES} values")
        open_.discard(key)
        sizes[key] = total
        return total

    try:
        size(data)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
