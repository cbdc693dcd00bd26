"""Terraform's configuration language, as much of it as terraform/ uses, evaluated in Python:
the tests' stand-in for a `terraform` binary, which cannot be installed here.

- `load_module(dir)`: a module's blocks (python-hcl2's Lark parse tree of every *.tf file),
  with the attributes' expressions kept as trees.
- `Evaluator`: evaluates those expressions the way Terraform does (for expressions,
  conditionals that evaluate only the branch taken, `&&`/`||` that evaluate both sides, maps
  iterated in key order, `"${x}"` giving x itself, ...) with the functions in FUNCTIONS, given
  the module's input variables and stand-ins for the resources and data sources it refers to.
- `render_template(text, variables)`: `templatefile`'s template language (`${...}`,
  `%{ if }`/`%{ else }`/`%{ endif }`, `%{ for }`/`%{ endfor }`, `~` strip markers, `$${` and
  `%%{` escapes).

Never a guess: syntax, functions and references it does not implement raise `Unsupported`,
which `try()` and `can()` do not catch (only `EvalError`, what Terraform itself would report
as an error in the expression, is theirs to catch).
"""

from __future__ import annotations

import base64
import copy
import functools
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import yaml
from lark import Token, Tree


class HclError(Exception):
    """A configuration the checks refuse (Terraform would refuse it too)."""


class Unsupported(HclError):
    """Syntax, a function or a reference the evaluator does not implement: never guessed."""


class EvalError(HclError):
    """An error in evaluating an expression, as Terraform would report it: what `try` and
    `can` catch."""


# -- parsing --------------------------------------------------------------------------------------


@dataclass
class Block:
    type: str
    labels: list[str]
    attributes: dict[str, Tree]
    blocks: list[Block]
    file: Path

    def children(self, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_]

    @property
    def name(self) -> str:
        return ".".join(self.labels)


@dataclass
class Module:
    path: Path
    blocks: list[Block] = field(default_factory=list)

    def of(self, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_]

    def variables(self) -> dict[str, Block]:
        return {b.labels[0]: b for b in self.of("variable")}

    def locals(self) -> dict[str, tuple[Tree, Path]]:
        out: dict[str, tuple[Tree, Path]] = {}
        for block in self.of("locals"):
            for name, expr in block.attributes.items():
                if name in out:
                    raise HclError(f"{block.file}: local.{name} is defined twice")
                out[name] = (expr, block.file)
        return out

    def resources(self) -> dict[str, Block]:
        return {f"{b.labels[0]}.{b.labels[1]}": b for b in self.of("resource")}

    def module_calls(self) -> dict[str, Block]:
        return {b.labels[0]: b for b in self.of("module")}


def _tokens_text(tree: Tree) -> str:
    return "".join(str(t) for t in tree.scan_values(lambda v: isinstance(v, Token)))


def _name(tree: Tree | Token) -> str:
    """An attribute name, block type or label: identifier, keyword, or a plain string."""
    if isinstance(tree, Token):
        return str(tree)
    if tree.data in ("identifier", "keyword", "literal_value"):
        return str(tree.children[0])
    if tree.data == "string":
        parts = [p for p in tree.children if isinstance(p, Tree)]
        text = ""
        for part in parts:
            (child,) = part.children
            if not isinstance(child, Token) or child.type != "STRING_CHARS":
                raise HclError(f"a block label with interpolation: {_tokens_text(tree)!r}")
            text += _unescape(str(child))
        return text
    raise HclError(f"unexpected name node {tree.data}")


def _block(tree: Tree, file: Path) -> Block:
    names: list[str] = []
    body = None
    for child in tree.children:
        if isinstance(child, Tree) and child.data == "body":
            body = child
        elif isinstance(child, Tree) and child.data != "new_line_or_comment":
            names.append(_name(child))
    assert body is not None
    attributes, blocks = _body(body, file)
    return Block(names[0], names[1:], attributes, blocks, file)


def _body(tree: Tree, file: Path) -> tuple[dict[str, Tree], list[Block]]:
    attributes: dict[str, Tree] = {}
    blocks: list[Block] = []
    for child in tree.children:
        if not isinstance(child, Tree):
            continue
        if child.data == "attribute":
            name = _name(child.children[0])
            if name in attributes:
                raise HclError(f"{file}: attribute {name} is set twice")
            attributes[name] = child.children[2]
        elif child.data == "block":
            blocks.append(_block(child, file))
    return attributes, blocks


@functools.lru_cache(maxsize=256)
def _parse_text(text: str) -> Tree:
    return hcl2.parses_to_tree(text)


def parse_file(path: Path) -> list[Block]:
    path = Path(path)
    try:
        tree = _parse_text(path.read_text(encoding="utf-8"))
    except Exception as e:  # lark's exceptions: a syntax error
        if isinstance(e, HclError):
            raise
        raise HclError(f"{path}: not valid HCL: {e}") from None
    (body,) = [c for c in tree.children if isinstance(c, Tree)]
    attributes, blocks = _body(body, path)
    if attributes:
        raise HclError(f"{path}: attributes at the top level: {sorted(attributes)}")
    return blocks


def load_module(path: Path) -> Module:
    path = Path(path).resolve()
    module = Module(path)
    for file in sorted(path.glob("*.tf")):
        module.blocks.extend(parse_file(file))
    if not module.blocks:
        raise HclError(f"{path}: no .tf files")
    return module


@functools.lru_cache(maxsize=1024)
def parse_expression(text: str) -> Tree:
    """One expression, as it would appear on the right of an attribute."""
    try:
        tree = hcl2.parses_to_tree(f"__expression = {text}\n")
    except Exception as e:
        raise HclError(f"not a valid expression: {text!r}: {e}") from None
    (body,) = [c for c in tree.children if isinstance(c, Tree)]
    attrs = [c for c in body.children if isinstance(c, Tree) and c.data == "attribute"]
    if len(attrs) != 1:
        raise HclError(f"not one expression: {text!r}")
    return attrs[0].children[2]


# -- references -----------------------------------------------------------------------------------

def traversals(tree: Tree) -> Iterator[list[str]]:
    """Every reference in `tree` as its root name and the attribute names after it
    (`var.mesh.domain` -> ["var", "mesh", "domain"]; an index ends the chain)."""
    for node in tree.iter_subtrees():
        if node.data != "get_attr_expr_term":
            continue
        inner, attr = node.children
        chain = [_name(attr.children[1])]
        while True:
            (term,) = [c for c in inner.children if isinstance(c, Tree)] or [None]
            if term is None:
                break
            if term.data == "identifier":
                yield [str(term.children[0]), *reversed(chain)]
                break
            if term.data != "get_attr_expr_term":
                break
            inner, attr = term.children
            chain.append(_name(attr.children[1]))


def module_expressions(module: Module) -> Iterator[tuple[Block, str, Tree]]:
    def walk(block: Block) -> Iterator[tuple[Block, str, Tree]]:
        for name, expr in block.attributes.items():
            yield block, name, expr
        for child in block.blocks:
            yield from walk(child)

    for block in module.blocks:
        yield from walk(block)


def variables_used(module: Module) -> set[str]:
    """The variables the module refers to, outside their own declarations (a variable that
    only its validation looks at is not used)."""
    used = set()
    for block, _, expr in module_expressions(module):
        if block.type == "validation" or block.type == "variable":
            continue
        for chain in traversals(expr):
            if chain[0] == "var" and len(chain) > 1:
                used.add(chain[1])
    return used


# -- values ---------------------------------------------------------------------------------------


class TfSet(tuple):
    """A set: Terraform orders sets of strings lexically (and so iterates them)."""

    def __new__(cls, items):
        unique: list[Any] = []
        for item in items:
            if not any(equal(item, u) for u in unique):
                unique.append(item)
        if all(isinstance(i, str) for i in unique):
            unique.sort()
        return super().__new__(cls, unique)


@dataclass(frozen=True)
class Namespace:
    """A reference on its way to a value: `var`, `aws_eip`, `data.aws_region`, ..."""

    parts: tuple[str, ...]


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, TfSet):
        return "set"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, Namespace):
        return f"reference {'.'.join(value.parts)}"
    return type(value).__name__


def equal(a: Any, b: Any) -> bool:
    """Terraform's ==: equal type and value (1 == "1" is false; so is true == 1)."""
    ka, kb = kind(a), kind(b)
    if {ka, kb} == {"list", "set"}:
        return False
    if ka != kb:
        return False
    if ka in ("list", "set"):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if ka == "map":
        return a.keys() == b.keys() and all(equal(a[k], b[k]) for k in a)
    return a == b


def number_text(n: int | float) -> str:
    if isinstance(n, float):
        if not math.isfinite(n):
            raise EvalError(f"{n} is not a number Terraform has")
        if n.is_integer():
            return str(int(n))
        return repr(n)
    return str(n)


def to_string(value: Any, what: str = "value") -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if value is None:
        raise EvalError(f"{what} is null")
    raise EvalError(f"{what}: a string is required, got a {kind(value)}")


def to_number(value: Any, what: str = "value") -> int | float:
    if isinstance(value, bool) or value is None:
        raise EvalError(f"{what}: a number is required, got {kind(value)}")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                pass
    raise EvalError(f"{what}: a number is required, got {kind(value)} {value!r}")


def to_bool(value: Any, what: str = "value") -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise EvalError(f"{what}: a bool is required, got {kind(value)}")


def _normal_number(n: int | float) -> int | float:
    if isinstance(n, float) and n.is_integer() and abs(n) < 2**53:
        return int(n)
    return n


def _iterate(value: Any, what: str) -> list[tuple[Any, Any]]:
    """(key, value) pairs, as a for expression and for_each see them."""
    if isinstance(value, dict):
        return [(k, value[k]) for k in sorted(value)]
    if isinstance(value, TfSet):
        return [(v, v) for v in value]
    if isinstance(value, list | tuple):
        return list(enumerate(value))
    if value is None:
        raise EvalError(f"{what}: cannot iterate over null")
    raise EvalError(f"{what}: cannot iterate over a {kind(value)}")


# -- strings --------------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        elif nxt == "u" and re.fullmatch(r"[0-9A-Fa-f]{4}", text[i + 2:i + 6]):
            out.append(chr(int(text[i + 2:i + 6], 16)))
            i += 6
        elif nxt == "U" and re.fullmatch(r"[0-9A-Fa-f]{8}", text[i + 2:i + 10]):
            out.append(chr(int(text[i + 2:i + 10], 16)))
            i += 10
        else:
            raise HclError(f"invalid escape sequence in {text!r}")
    return "".join(out)


# -- the evaluator --------------------------------------------------------------------------------


class Evaluator:
    def __init__(self, module: Module, variables: dict[str, Any] | None = None, *,
                 resources: dict[str, Any] | None = None, cwd: Path | None = None,
                 strict_variables: bool = True) -> None:
        self.module = module
        self.cwd = Path(cwd or module.path)
        self.resources = dict(resources or {})
        self._declared = module.variables()
        given = dict(variables or {})
        unknown = sorted(set(given) - set(self._declared))
        if unknown:
            raise HclError(f"{module.path}: no variable declared for {unknown}")
        self.variables: dict[str, Any] = {}
        for name, block in self._declared.items():
            type_ = block.attributes.get("type")
            if name in given:
                value = given[name]
            elif "default" in block.attributes:
                value = self.eval(block.attributes["default"], {}, allow_roots=False)
            elif strict_variables:
                raise HclError(f"{module.path}: variable {name} is required and not given")
            else:
                continue
            if type_ is not None:
                value = convert(value, type_, f"var.{name}")
            self.variables[name] = value
        self._locals = module.locals()
        self._local_values: dict[str, Any] = {}
        self._evaluating: list[str] = []
        self.count_index: int | None = None
        self.each: tuple[Any, Any] | None = None

    # references ----------------------------------------------------------------------------

    def local(self, name: str) -> Any:
        if name in self._local_values:
            return self._local_values[name]
        if name not in self._locals:
            raise HclError(f"{self.module.path}: no local value {name}")
        if name in self._evaluating:
            raise HclError(f"local values refer to each other in a cycle: {self._evaluating}")
        self._evaluating.append(name)
        try:
            value = self.eval(self._locals[name][0], {})
        finally:
            self._evaluating.pop()
        self._local_values[name] = value
        return value

    def with_instance(self, count_index: int | None = None,
                      each: tuple[Any, Any] | None = None) -> Evaluator:
        """The same module, evaluating inside one instance of a counted or for_each
        resource (locals do not see count or each, and keep their values)."""
        other = object.__new__(Evaluator)
        other.__dict__.update(self.__dict__)
        other.count_index, other.each = count_index, each
        return other

    def _resolve(self, ns: Namespace, attr: str) -> Any:
        parts = (*ns.parts, attr)
        root = parts[0]
        if root == "var":
            if attr not in self._declared:
                raise HclError(f"reference to undeclared variable var.{attr}")
            if attr not in self.variables:
                raise Unsupported(f"var.{attr} has no value here")
            return self.variables[attr]
        if root == "local":
            return self.local(attr)
        if root == "path":
            if attr == "module":
                return str(self.module.path)
            if attr in ("root", "cwd"):
                return str(self.cwd)
            raise HclError(f"unknown path.{attr}")
        if root == "count":
            if attr != "index" or self.count_index is None:
                raise HclError(f"count.{attr} used outside a counted resource")
            return self.count_index
        if root == "each":
            if self.each is None or attr not in ("key", "value"):
                raise HclError(f"each.{attr} used outside a for_each resource")
            return self.each[0] if attr == "key" else self.each[1]
        if root in ("self", "terraform"):
            raise Unsupported(f"{'.'.join(parts)}")
        address = ".".join(parts)
        if root in ("data", "module"):
            if root == "data" and len(parts) < 3:
                return Namespace(parts)
            if root == "module" and len(parts) < 2:
                return Namespace(parts)
        elif len(parts) < 2:
            return Namespace(parts)
        if address not in self.resources:
            raise Unsupported(f"{address}: no value given for it (a resource, data source or "
                              "module output: the test gives stand-ins for those it needs)")
        return self.resources[address]

    # expressions ---------------------------------------------------------------------------

    def eval(self, tree: Tree, scope: dict[str, Any], allow_roots: bool = True) -> Any:
        value = self._eval(tree, scope, allow_roots)
        if isinstance(value, Namespace):
            raise HclError(f"a bare reference to {'.'.join(value.parts)}")
        return value

    def _eval(self, tree: Tree | Token, scope: dict[str, Any], roots: bool) -> Any:
        if isinstance(tree, Token):
            raise HclError(f"unexpected token {tree!r}")
        handler = getattr(self, f"_e_{tree.data}", None)
        if handler is None:
            raise Unsupported(f"HCL syntax {tree.data!r}: {_tokens_text(tree)!r}")
        return handler(tree, scope, roots)

    @staticmethod
    def _subtrees(tree: Tree) -> list[Tree]:
        return [c for c in tree.children
                if isinstance(c, Tree) and c.data != "new_line_or_comment"]

    def _e_expr_term(self, tree, scope, roots):
        (inner,) = self._subtrees(tree)
        return self._eval(inner, scope, roots)

    def _e_identifier(self, tree, scope, roots):
        name = str(tree.children[0])
        if name in scope:
            return scope[name]
        if not roots:
            raise HclError(f"unknown name {name!r} (a template sees only its variables)")
        return Namespace((name,))

    def _e_literal_value(self, tree, scope, roots):
        return {"true": True, "false": False, "null": None}[str(tree.children[0])]

    def _e_int_lit(self, tree, scope, roots):
        return int(str(tree.children[0]))

    def _e_float_lit(self, tree, scope, roots):
        return _normal_number(float(str(tree.children[0])))

    def _e_heredoc_template(self, tree, scope, roots):
        raise Unsupported("heredocs (write the text in a template file or a quoted string)")

    _e_heredoc_template_trim = _e_heredoc_template

    def _e_string(self, tree, scope, roots):
        parts = [c.children[0] for c in tree.children if isinstance(c, Tree)]
        if len(parts) == 1 and isinstance(parts[0], Tree) and parts[0].data == "interpolation":
            # "${x}" is x itself, not x converted to a string
            return self.eval(self._subtrees(parts[0])[0], scope, roots)
        out = []
        for part in parts:
            if isinstance(part, Token):
                text = str(part)
                if part.type == "ESCAPED_INTERPOLATION":
                    out.append(text[1:])
                elif part.type == "ESCAPED_DIRECTIVE":
                    out.append(text[1:])
                else:
                    out.append(_unescape(text))
            elif part.data == "interpolation":
                value = self.eval(self._subtrees(part)[0], scope, roots)
                out.append(to_string(value, f"${{{_tokens_text(part)[2:-1].strip()}}}"))
            else:
                raise Unsupported(f"template directives in a quoted string: {_tokens_text(tree)}")
        return "".join(out)

    def _e_tuple(self, tree, scope, roots):
        return [self.eval(c, scope, roots) for c in self._subtrees(tree)]

    def _e_object(self, tree, scope, roots):
        out: dict[str, Any] = {}
        for elem in self._subtrees(tree):
            key_tree, value_tree = self._subtrees(elem)
            (key_expr,) = self._subtrees(key_tree) or [key_tree.children[0]]
            if isinstance(key_expr, Tree) and key_expr.data == "keyword":
                key = str(key_expr.children[0])
            else:
                inner = self._subtrees(key_expr) if key_expr.data == "expr_term" else []
                if len(inner) == 1 and inner[0].data == "identifier" and \
                        not any(isinstance(c, Token) and c.type == "LPAR"
                                for c in key_expr.children):
                    key = str(inner[0].children[0])  # a bare name is the key itself
                else:
                    key = to_string(self.eval(key_expr, scope, roots), "an object key")
            if key in out:
                raise EvalError(f"duplicate object key {key!r}")
            out[key] = self.eval(value_tree, scope, roots)
        return out

    def _e_get_attr_expr_term(self, tree, scope, roots):
        inner, attr = tree.children
        value = self._eval(inner, scope, roots)
        return self._attr(value, _name(attr.children[1]))

    def _attr(self, value: Any, name: str) -> Any:
        if isinstance(value, Namespace):
            return self._resolve(value, name)
        if isinstance(value, dict):
            if name not in value:
                raise EvalError(f"this object has no attribute {name!r}")
            return value[name]
        if value is None:
            raise EvalError(f"attribute {name!r} of null")
        raise EvalError(f"cannot read attribute {name!r} of a {kind(value)}")

    def _index(self, value: Any, key: Any) -> Any:
        if isinstance(value, Namespace):
            raise HclError(f"an index on {'.'.join(value.parts)}")
        if isinstance(value, dict):
            key = to_string(key, "a map key")
            if key not in value:
                raise EvalError(f"the map has no key {key!r}")
            return value[key]
        if isinstance(value, TfSet):
            raise EvalError("sets cannot be indexed")
        if isinstance(value, list | tuple):
            n = to_number(key, "an index")
            if not float(n).is_integer() or not 0 <= n < len(value):
                raise EvalError(f"index {n} out of range (length {len(value)})")
            return value[int(n)]
        if value is None:
            raise EvalError("an index on null")
        raise EvalError(f"cannot index a {kind(value)}")

    def _e_index_expr_term(self, tree, scope, roots):
        inner, index = tree.children
        value = self._eval(inner, scope, roots)
        return self._index(value, self._index_key(index, scope, roots))

    def _index_key(self, index: Tree, scope, roots) -> Any:
        if index.data == "braces_index":
            return self.eval(self._subtrees(index)[0], scope, roots)
        if index.data == "short_index":
            return int(str(index.children[1]))
        raise Unsupported(f"index form {index.data}")

    def _splat(self, tree, scope, roots, full: bool):
        inner, splat = tree.children
        value = self.eval(inner, scope, roots)
        if value is None:
            items: list[Any] = []
        elif isinstance(value, list | tuple) and not isinstance(value, dict):
            items = list(value)
        elif full:
            items = [value]
        else:
            raise Unsupported("an attribute splat (.*) of a non-list")
        out = []
        for item in items:
            for step in self._subtrees(splat):
                if step.data == "get_attr":
                    item = self._attr(item, _name(step.children[1]))
                else:
                    item = self._index(item, self._index_key(step, scope, roots))
            out.append(item)
        return out

    def _e_full_splat_expr_term(self, tree, scope, roots):
        return self._splat(tree, scope, roots, full=True)

    def _e_attr_splat_expr_term(self, tree, scope, roots):
        return self._splat(tree, scope, roots, full=False)

    def _e_unary_op(self, tree, scope, roots):
        op, operand = tree.children
        value = self.eval(operand, scope, roots)
        if str(op) == "-":
            return -to_number(value, "operand of -")
        return not to_bool(value, "operand of !")

    def _e_binary_op(self, tree, scope, roots):
        lhs_tree, term = self._subtrees(tree)[:2]
        op_tree, rhs_tree = self._subtrees(term)
        op = str(op_tree.children[0])
        # Terraform evaluates both operands, && and || included (no short circuit).
        lhs = self.eval(lhs_tree, scope, roots)
        rhs = self.eval(rhs_tree, scope, roots)
        if op == "==":
            return equal(lhs, rhs)
        if op == "!=":
            return not equal(lhs, rhs)
        if op in ("&&", "||"):
            a, b = to_bool(lhs, f"left of {op}"), to_bool(rhs, f"right of {op}")
            return (a and b) if op == "&&" else (a or b)
        a, b = to_number(lhs, f"left of {op}"), to_number(rhs, f"right of {op}")
        if op == "<":
            return a < b
        if op == ">":
            return a > b
        if op == "<=":
            return a <= b
        if op == ">=":
            return a >= b
        if op == "+":
            return _normal_number(a + b)
        if op == "-":
            return _normal_number(a - b)
        if op == "*":
            return _normal_number(a * b)
        if op in ("/", "%"):
            if b == 0:
                raise EvalError("division by zero")
            if op == "/":
                return _normal_number(a / b)
            return _normal_number(math.fmod(a, b))
        raise Unsupported(f"operator {op}")

    def _e_conditional(self, tree, scope, roots):
        cond_tree, then_tree, else_tree = self._subtrees(tree)
        # Only the branch taken is evaluated.
        if to_bool(self.eval(cond_tree, scope, roots), "a condition"):
            return self.eval(then_tree, scope, roots)
        return self.eval(else_tree, scope, roots)

    def _for(self, tree, scope, roots):
        subs = self._subtrees(tree)
        intro, rest = subs[0], subs[1:]
        names = [str(c.children[0]) for c in self._subtrees(intro) if c.data == "identifier"]
        (collection_tree,) = [c for c in self._subtrees(intro) if c.data != "identifier"]
        cond = None
        if rest and rest[-1].data == "for_cond":
            cond = self._subtrees(rest[-1])[0]
            rest = rest[:-1]
        collection = self.eval(collection_tree, scope, roots)
        for key, value in _iterate(collection, "a for expression"):
            inner = dict(scope)
            if len(names) == 2:
                inner[names[0]], inner[names[1]] = key, value
            else:
                inner[names[0]] = value
            if cond is not None and not to_bool(self.eval(cond, inner, roots), "a for condition"):
                continue
            yield inner, rest

    def _e_for_tuple_expr(self, tree, scope, roots):
        return [self.eval(rest[0], inner, roots) for inner, rest in self._for(tree, scope, roots)]

    def _e_for_object_expr(self, tree, scope, roots):
        grouping = any(isinstance(c, Token) and c.type == "ELLIPSIS" for c in tree.children)
        out: dict[str, Any] = {}
        for inner, rest in self._for(tree, scope, roots):
            key = to_string(self.eval(rest[0], inner, roots), "a for expression's key")
            value = self.eval(rest[1], inner, roots)
            if grouping:
                out.setdefault(key, []).append(value)
            elif key in out:
                raise EvalError(f"duplicate key {key!r} in a for expression (use ... to group)")
            else:
                out[key] = value
        return out

    def _e_function_call(self, tree, scope, roots):
        subs = self._subtrees(tree)
        if any(isinstance(c, Token) and c.type == "COLONS" for c in tree.children):
            raise Unsupported(f"provider functions: {_tokens_text(tree)}")
        name = str(subs[0].children[0])
        args_tree = subs[1] if len(subs) > 1 else None
        arg_trees = self._subtrees(args_tree) if args_tree is not None else []
        expand = args_tree is not None and any(
            isinstance(c, Token) and c.type == "ELLIPSIS" for c in args_tree.children)
        if name == "try":
            for arg in arg_trees:
                try:
                    return self.eval(arg, scope, roots)
                except EvalError:
                    continue
            raise EvalError("no expression given to try() could be evaluated")
        if name == "can":
            (arg,) = arg_trees
            try:
                self.eval(arg, scope, roots)
            except EvalError:
                return False
            return True
        if name not in FUNCTIONS:
            raise Unsupported(f"function {name}()")
        args = [self.eval(a, scope, roots) for a in arg_trees]
        if expand:
            last = args.pop()
            if not isinstance(last, list | tuple):
                raise EvalError(f"{name}(...): only a list can be expanded with ...")
            args.extend(last)
        return FUNCTIONS[name](self, *args)

    # whole blocks --------------------------------------------------------------------------

    def attribute(self, block: Block, name: str) -> Any:
        return self.eval(block.attributes[name], {})

    def check_validations(self) -> list[str]:
        """The error messages of every variable validation that fails for the values
        given."""
        failed = []
        for name, block in self._declared.items():
            if name not in self.variables:
                continue
            for rule in block.children("validation"):
                if not to_bool(self.eval(rule.attributes["condition"], {}), "a condition"):
                    failed.append(self.eval(rule.attributes["error_message"], {}))
        return failed


# -- types ----------------------------------------------------------------------------------------


def convert(value: Any, type_tree: Tree, what: str) -> Any:
    """`value` converted to the type constraint `type_tree` (an expression tree): missing
    optional() attributes of objects become null; a value of another shape is refused."""
    return _convert(value, _type(type_tree), what)


def _type(tree: Tree) -> Any:
    while tree.data == "expr_term":
        (tree,) = Evaluator._subtrees(tree)
    if tree.data == "identifier":
        name = str(tree.children[0])
        if name in ("string", "number", "bool", "any"):
            return name
        raise Unsupported(f"type {name}")
    if tree.data == "function_call":
        subs = Evaluator._subtrees(tree)
        name = str(subs[0].children[0])
        args = Evaluator._subtrees(subs[1]) if len(subs) > 1 else []
        if name in ("list", "set", "map") and len(args) == 1:
            return (name, _type(args[0]))
        if name == "optional" and len(args) == 1:
            return ("optional", _type(args[0]))
        if name == "object" and len(args) == 1:
            obj = args[0]
            while obj.data == "expr_term":
                (obj,) = Evaluator._subtrees(obj)
            attrs = {}
            for elem in Evaluator._subtrees(obj):
                key_tree, value_tree = Evaluator._subtrees(elem)
                attrs[_tokens_text(key_tree).strip()] = _type(value_tree)
            return ("object", attrs)
    raise Unsupported(f"type constraint {_tokens_text(tree)}")


def _convert(value: Any, type_: Any, what: str) -> Any:
    if value is None or type_ == "any":
        return value
    if type_ == "string":
        if isinstance(value, dict | list | tuple):
            raise HclError(f"{what}: a string is required")
        return to_string(value, what)
    if type_ == "number":
        return to_number(value, what)
    if type_ == "bool":
        return to_bool(value, what)
    name, inner = type_
    if name in ("list", "set"):
        if not isinstance(value, list | tuple):
            raise HclError(f"{what}: a {name} is required, got a {kind(value)}")
        items = [_convert(v, inner, f"{what}[{i}]") for i, v in enumerate(value)]
        return TfSet(items) if name == "set" else items
    if name == "map":
        if not isinstance(value, dict):
            raise HclError(f"{what}: a map is required, got a {kind(value)}")
        return {k: _convert(v, inner, f"{what}[{k!r}]") for k, v in value.items()}
    if name == "object":
        if not isinstance(value, dict):
            raise HclError(f"{what}: an object is required, got a {kind(value)}")
        extra = sorted(set(value) - set(inner))
        if extra:
            raise HclError(f"{what}: attributes the type does not have: {extra}")
        out = {}
        for attr, attr_type in inner.items():
            optional = isinstance(attr_type, tuple) and attr_type[0] == "optional"
            if attr not in value:
                if not optional:
                    raise HclError(f"{what}: attribute {attr!r} is required")
                out[attr] = None
                continue
            out[attr] = _convert(value[attr], attr_type[1] if optional else attr_type,
                                 f"{what}.{attr}")
        return out
    raise Unsupported(f"type {type_!r}")


# -- functions ------------------------------------------------------------------------------------


def _path(ev: Evaluator, path: Any) -> Path:
    path = Path(to_string(path, "a path"))
    return path if path.is_absolute() else ev.cwd / path


def _file(ev: Evaluator, path: Any) -> str:
    p = _path(ev, path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalError(f"no file exists at {p}") from None
    except UnicodeDecodeError:
        raise EvalError(f"{p} is not UTF-8") from None


def _fileexists(ev: Evaluator, path: Any) -> bool:
    if path is None:
        raise EvalError("fileexists: path must not be null")
    p = _path(ev, path)
    if p.is_dir():
        raise EvalError(f"{p} is a directory, not a file")
    return p.is_file()


def _glob_regex(pattern: str) -> re.Pattern:
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c in "{}[]\\":
            raise Unsupported(f"fileset pattern syntax {c!r} in {pattern!r}")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def _fileset(ev: Evaluator, path: Any, pattern: Any) -> TfSet:
    base = _path(ev, path)
    regex = _glob_regex(to_string(pattern, "a pattern"))
    found = []
    for root, _dirs, files in os.walk(base):
        for name in files:
            rel = (Path(root) / name).relative_to(base).as_posix()
            if regex.fullmatch(rel):
                found.append(rel)
    return TfSet(found)


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """yamldecode's reading of YAML, as checked against Terraform 1.11: YAML 1.1 booleans
    (y, yes, on, NO, ...), integers in base 10 even with leading zeros, 0x hexadecimal,
    exponents without a dot; what it has not been checked on (timestamps, other integer
    forms) is Unsupported."""

    def construct_yaml_int(self, node):
        text = str(self.construct_scalar(node)).replace("_", "")
        if re.fullmatch(r"[-+]?[0-9]+", text):
            return int(text, 10)
        if re.fullmatch(r"[-+]?0x[0-9a-fA-F]+", text):
            return int(text, 16)
        raise Unsupported(f"yamldecode of the integer {text!r}")

    def construct_yaml_float(self, node):
        return _normal_number(super().construct_yaml_float(node))

    def construct_yaml_bool(self, node):
        return str(self.construct_scalar(node)).lower() in ("y", "yes", "true", "on")

    def construct_yaml_timestamp(self, node):
        raise Unsupported(f"yamldecode of the timestamp {node.value!r}")


_YamlLoader.add_constructor("tag:yaml.org,2002:bool", _YamlLoader.construct_yaml_bool)
_YamlLoader.add_constructor("tag:yaml.org,2002:int", _YamlLoader.construct_yaml_int)
_YamlLoader.add_constructor("tag:yaml.org,2002:float", _YamlLoader.construct_yaml_float)
_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _YamlLoader.construct_yaml_timestamp)
_YamlLoader.yaml_implicit_resolvers = {
    k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
# Go reads 1e3 and 1.0e3 as numbers; YAML 1.1 (PyYAML) wants a dot and a signed exponent.
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))
_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE"
               r"|on|On|ON|off|Off|OFF)$"), list("yYnNtTfFoO"))


def _yamldecode(ev: Evaluator, text: Any) -> Any:
    return copy.deepcopy(_yaml_value(to_string(text, "yamldecode's argument")))


@functools.lru_cache(maxsize=512)
def _yaml_value(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as e:
        raise EvalError(f"yamldecode: {e}") from None


def _json_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        # Go's encoder escapes these for HTML, and Terraform's jsonencode with it.
        for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                       ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(c, esc)
        return text
    if isinstance(value, dict):
        return "{" + ",".join(f"{_json_text(k)}:{_json_text(value[k])}"
                              for k in sorted(value)) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_json_text(v) for v in value) + "]"
    raise EvalError(f"jsonencode: cannot encode a {kind(value)}")


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, list | tuple) and not isinstance(value, dict):
        return list(value)
    raise EvalError(f"{what}: a list or set is required, got a {kind(value)}")


def _map(value: Any, what: str) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise EvalError(f"{what}: a map or object is required, got a {kind(value)}")


def _coalesce(ev: Evaluator, *args: Any) -> Any:
    for a in args:
        if a is not None and a != "":
            return a
    raise EvalError("coalesce: no non-null, non-empty argument")


def _contains(ev: Evaluator, collection: Any, value: Any) -> bool:
    if value is None:
        raise EvalError("contains: the value must not be null")
    return any(equal(v, value) for v in _list(collection, "contains"))


def _lookup(ev: Evaluator, mapping: Any, key: Any, *default: Any) -> Any:
    mapping = _map(mapping, "lookup")
    key = to_string(key, "lookup's key")
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise EvalError(f"lookup: no key {key!r} and no default")


def _merge(ev: Evaluator, *maps: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in maps:
        if m is not None:
            out.update(_map(m, "merge"))
    return out


def _range(ev: Evaluator, *args: Any) -> list[int | float]:
    nums = [to_number(a, "range") for a in args]
    if len(nums) == 1:
        start, stop, step = 0, nums[0], 1
    elif len(nums) == 2:
        start, stop = nums
        step = 1 if stop >= start else -1
    elif len(nums) == 3:
        start, stop, step = nums
    else:
        raise EvalError("range takes one to three arguments")
    if step == 0:
        raise EvalError("range: step must not be zero")
    out = []
    n = start
    while (n < stop) if step > 0 else (n > stop):
        out.append(_normal_number(n))
        n += step
        if len(out) > 1024:
            raise EvalError("range: more than 1024 elements")
    return out


def _regex(ev: Evaluator, pattern: Any, text: Any) -> Any:
    pattern, text = to_string(pattern, "regex's pattern"), to_string(text, "regex's string")
    if re.search(r"\(\?P?<|\\[pPQEzC]|\[\[:", pattern):
        raise Unsupported(f"regex syntax of RE2 not checked here: {pattern!r}")
    m = re.search(pattern, text)
    if m is None:
        raise EvalError(f"regex: {pattern!r} does not match {text!r}")
    if m.re.groups == 0:
        return m.group(0)
    return [g if g is not None else "" for g in m.groups()]


def _indent(ev: Evaluator, spaces: Any, text: Any) -> str:
    n = to_number(spaces, "indent's spaces")
    return to_string(text, "indent's string").replace("\n", "\n" + " " * int(n))


def _join(ev: Evaluator, sep: Any, *lists: Any) -> str:
    items = []
    for lst in lists:
        for v in _list(lst, "join"):
            if v is None:
                raise EvalError("join: an element is null")
            items.append(to_string(v, "join's element"))
    return to_string(sep, "join's separator").join(items)


def _one(ev: Evaluator, value: Any) -> Any:
    items = _list(value, "one")
    if len(items) > 1:
        raise EvalError(f"one: {len(items)} elements, at most one allowed")
    return items[0] if items else None


def _slice(ev: Evaluator, value: Any, start: Any, end: Any) -> list[Any]:
    items = _list(value, "slice")
    s, e = int(to_number(start, "slice")), int(to_number(end, "slice"))
    if not 0 <= s <= e <= len(items):
        raise EvalError(f"slice: [{s}:{e}] out of range for length {len(items)}")
    return items[s:e]


def _sort(ev: Evaluator, value: Any) -> list[str]:
    items = _list(value, "sort")
    return sorted(to_string(v, "sort's element") for v in items)


def _tostring(ev: Evaluator, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict | list | tuple):
        raise EvalError(f"tostring: cannot convert a {kind(value)} to a string")
    return to_string(value)


def _cidrsubnet(ev: Evaluator, prefix: Any, newbits: Any, netnum: Any) -> str:
    try:
        net = ipaddress.ip_network(to_string(prefix, "cidrsubnet's prefix"), strict=False)
    except ValueError as e:
        raise EvalError(f"cidrsubnet: {e}") from None
    bits, num = int(to_number(newbits, "newbits")), int(to_number(netnum, "netnum"))
    length = net.prefixlen + bits
    if length > net.max_prefixlen or not 0 <= num < 2 ** bits:
        raise EvalError(f"cidrsubnet: {prefix} has no subnet {num} of {bits} more bits")
    base = int(net.network_address) + (num << (net.max_prefixlen - length))
    return f"{ipaddress.ip_address(base)}/{length}"


def _cidrhost(ev: Evaluator, prefix: Any, hostnum: Any) -> str:
    try:
        net = ipaddress.ip_network(to_string(prefix, "cidrhost's prefix"), strict=False)
    except ValueError as e:
        raise EvalError(f"cidrhost: {e}") from None
    n = int(to_number(hostnum, "hostnum"))
    size = net.num_addresses
    if not -size <= n < size:
        raise EvalError(f"cidrhost: {prefix} has no host {n}")
    return str(ipaddress.ip_address(int(net.network_address) + (n % size)))


def _templatefile(ev: Evaluator, path: Any, variables: Any) -> str:
    p = _path(ev, path)
    if not p.is_file():
        raise EvalError(f"templatefile: no file exists at {p}")
    return render_template(p.read_text(encoding="utf-8"), _map(variables, "templatefile"),
                           ev=ev, origin=str(p))


def _index_of(ev: Evaluator, value: Any, item: Any) -> int:
    for i, v in enumerate(_list(value, "index")):
        if equal(v, item):
            return i
    raise EvalError("index: the item is not in the list")


def _flatten(ev: Evaluator, value: Any) -> list[Any]:
    out: list[Any] = []
    for v in _list(value, "flatten"):
        if isinstance(v, list | tuple) and not isinstance(v, dict):
            out.extend(_flatten(ev, v))
        else:
            out.append(v)
    return out


def _setintersection(ev: Evaluator, first: Any, *others: Any) -> TfSet:
    items = TfSet(_list(first, "setintersection"))
    for other in others:
        rest = _list(other, "setintersection")
        items = TfSet([i for i in items if any(equal(i, o) for o in rest)])
    return items


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda ev, v: all(to_bool(x, "alltrue's element") for x in _list(v, "alltrue")),
    "anytrue": lambda ev, v: any(to_bool(x, "anytrue's element") for x in _list(v, "anytrue")),
    "base64encode": lambda ev, s: base64.b64encode(to_string(s).encode()).decode(),
    "cidrhost": _cidrhost,
    "cidrsubnet": _cidrsubnet,
    "coalesce": _coalesce,
    "concat": lambda ev, *ls: [x for lst in ls for x in _list(lst, "concat")],
    "contains": _contains,
    "distinct": lambda ev, v: _distinct(_list(v, "distinct")),
    "endswith": lambda ev, s, x: to_string(s).endswith(to_string(x)),
    "file": _file,
    "fileexists": _fileexists,
    "fileset": _fileset,
    "flatten": _flatten,
    "floor": lambda ev, n: _normal_number(math.floor(to_number(n, "floor"))),
    "ceil": lambda ev, n: _normal_number(math.ceil(to_number(n, "ceil"))),
    "index": _index_of,
    "indent": _indent,
    "join": _join,
    "jsonencode": lambda ev, v: _json_text(v),
    "keys": lambda ev, m: sorted(_map(m, "keys")),
    "length": lambda ev, v: _length(v),
    "lookup": _lookup,
    "lower": lambda ev, s: to_string(s).lower(),
    "max": lambda ev, *ns: _normal_number(max(to_number(n, "max") for n in ns)),
    "merge": _merge,
    "min": lambda ev, *ns: _normal_number(min(to_number(n, "min") for n in ns)),
    "nonsensitive": lambda ev, v: v,
    "one": _one,
    "range": _range,
    "regex": _regex,
    "sensitive": lambda ev, v: v,
    "setintersection": _setintersection,
    "slice": _slice,
    "sort": _sort,
    "split": lambda ev, sep, s: to_string(s).split(to_string(sep)),
    "startswith": lambda ev, s, x: to_string(s).startswith(to_string(x)),
    "templatefile": _templatefile,
    "tolist": lambda ev, v: _list(v, "tolist"),
    "tonumber": lambda ev, v: None if v is None else to_number(v, "tonumber"),
    "toset": lambda ev, v: TfSet(_list(v, "toset")),
    "tostring": _tostring,
    "trimprefix": lambda ev, s, p: (lambda s, p: s[len(p):] if p and s.startswith(p) else s)(
        to_string(s), to_string(p)),
    "trimspace": lambda ev, s: to_string(s).strip(),
    "trimsuffix": lambda ev, s, x: (lambda s, x: s[:-len(x)] if x and s.endswith(x) else s)(
        to_string(s), to_string(x)),
    "upper": lambda ev, s: to_string(s).upper(),
    "values": lambda ev, m: [_map(m, "values")[k] for k in sorted(_map(m, "values"))],
    "yamldecode": _yamldecode,
}


def _distinct(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if not any(equal(item, o) for o in out):
            out.append(item)
    return out


def _length(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise EvalError(f"length of a {kind(value)}")


# -- templates ------------------------------------------------------------------------------------


@dataclass
class _Seq:
    """An interpolation or a directive, with its strip markers."""

    kind: str  # "interp", "if", "else", "endif", "for", "endfor"
    expr: str = ""
    names: tuple[str, ...] = ()
    strip_before: bool = False
    strip_after: bool = False


def _scan_close(text: str, i: int, origin: str) -> int:
    """The index of the `}` closing a sequence whose content starts at i."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _scan_string(text, i + 1, origin)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise HclError(f"{origin}: a template sequence is not closed")


def _scan_string(text: str, i: int, origin: str) -> int:
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        elif text.startswith(("$${", "%%{"), i):
            i += 3
        elif text.startswith(("${", "%{"), i):
            i = _scan_close(text, i + 2, origin) + 1
        elif text[i] == "\n":
            raise HclError(f"{origin}: a quoted string inside a template sequence runs past "
                           "the end of its line")
        else:
            i += 1
    raise HclError(f"{origin}: a quoted string inside a template sequence is not closed")


_FOR = re.compile(r"for\s+([A-Za-z_][A-Za-z0-9_-]*)(?:\s*,\s*([A-Za-z_][A-Za-z0-9_-]*))?"
                  r"\s+in\s+(.+)", re.S)


def _lex_template(text: str, origin: str) -> list[str | _Seq]:
    parts: list[str | _Seq] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith(("$${", "%%{"), i):
            literal.append(text[i + 1:i + 3])
            i += 3
            continue
        if text.startswith(("${", "%{"), i):
            end = _scan_close(text, i + 2, origin)
            content = text[i + 2:end]
            seq = _Seq("interp")
            if content.startswith("~"):
                seq.strip_before, content = True, content[1:]
            if content.rstrip().endswith("~"):
                seq.strip_after, content = True, content.rstrip()[:-1]
            content = content.strip()
            if text[i] == "$":
                seq.expr = content
            else:
                word = content.split(None, 1)[0] if content else ""
                if word in ("else", "endif", "endfor") and content == word:
                    seq.kind = word
                elif word == "if":
                    seq.kind, seq.expr = "if", content[2:].strip()
                elif word == "for":
                    m = _FOR.fullmatch(content)
                    if m is None:
                        raise HclError(f"{origin}: malformed for directive %{{{content}}}")
                    seq.kind, seq.expr = "for", m.group(3).strip()
                    seq.names = tuple(n for n in (m.group(1), m.group(2)) if n)
                else:
                    raise Unsupported(f"{origin}: template directive %{{{content}}}")
            if not seq.expr and seq.kind in ("interp", "if", "for"):
                raise HclError(f"{origin}: an empty template sequence")
            parts.append("".join(literal))
            literal = []
            parts.append(seq)
            i = end + 1
            continue
        literal.append(text[i])
        i += 1
    parts.append("".join(literal))
    return parts


def _strip_start(literal: str) -> str:
    # Terraform's template literals are tokens of one line each (newline included): a strip
    # marker strips the whitespace of the next token only.
    line, nl, rest = literal.partition("\n")
    return (line + nl).lstrip() + rest


def _strip_end(literal: str) -> str:
    body = literal[:-1] if literal.endswith("\n") else literal
    cut = body.rfind("\n") + 1
    return literal[:cut] + literal[cut:].rstrip()


@dataclass
class _Node:
    seq: _Seq | None
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


def _tree(parts: list[str | _Seq], origin: str) -> list[Any]:
    # strip markers first, on the literals beside them
    parts = list(parts)
    for i, part in enumerate(parts):
        if isinstance(part, _Seq):
            if part.strip_before:
                parts[i - 1] = _strip_end(parts[i - 1])
            if part.strip_after:
                parts[i + 1] = _strip_start(parts[i + 1])
    root = _Node(None)
    stack = [root]
    in_else = [False]
    for part in parts:
        target = stack[-1].orelse if in_else[-1] else stack[-1].body
        if isinstance(part, str):
            if part:
                target.append(part)
        elif part.kind == "interp":
            target.append(part)
        elif part.kind in ("if", "for"):
            node = _Node(part)
            target.append(node)
            stack.append(node)
            in_else.append(False)
        elif part.kind == "else":
            if stack[-1].seq is None or stack[-1].seq.kind != "if" or in_else[-1]:
                raise HclError(f"{origin}: %{{else}} outside an if")
            in_else[-1] = True
        else:
            opener = "if" if part.kind == "endif" else "for"
            if stack[-1].seq is None or stack[-1].seq.kind != opener:
                raise HclError(f"{origin}: %{{{part.kind}}} without its %{{{opener}}}")
            stack.pop()
            in_else.pop()
    if len(stack) != 1:
        raise HclError(f"{origin}: %{{{stack[-1].seq.kind}}} is not closed")
    return root.body


def template_names(text: str, origin: str = "template") -> set[str]:
    """The variables a template refers to (names not bound by its own for directives)."""
    names: set[str] = set()

    def walk(nodes: list[Any], bound: set[str]) -> None:
        for node in nodes:
            if isinstance(node, _Seq):
                names.update(_free_names(parse_expression(node.expr)) - bound)
            elif isinstance(node, _Node):
                names.update(_free_names(parse_expression(node.seq.expr)) - bound)
                inner = bound | set(node.seq.names) if node.seq.kind == "for" else bound
                walk(node.body, inner)
                walk(node.orelse, bound)

    walk(_tree(_lex_template(text, origin), origin), set())
    return names


def _free_names(tree: Tree) -> set[str]:
    """Root names an expression refers to, less those its for expressions bind."""
    found: set[str] = set()
    bound: set[str] = set()

    def walk(node: Tree, parent: str) -> None:
        if node.data == "identifier":
            if parent == "for_intro":
                bound.add(str(node.children[0]))
            elif parent == "expr_term":
                found.add(str(node.children[0]))
            return  # a function's name, an attribute's, an object key's are not references
        if node.data == "object_elem_key":
            (key,) = [c for c in node.children if isinstance(c, Tree)]
            inner = [c for c in key.children if isinstance(c, Tree)]
            if key.data == "keyword" or (len(inner) == 1 and inner[0].data == "identifier"):
                return
        for child in node.children:
            if isinstance(child, Tree):
                walk(child, node.data)

    walk(tree, "")
    return found - bound


def render_template(text: str, variables: dict[str, Any], *, ev: Evaluator | None = None,
                    origin: str = "template") -> str:
    """The text `templatefile` makes of `text` with `variables`."""
    for name in variables:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise EvalError(f"templatefile: {name!r} is not a valid variable name")
    nodes = _tree(_lex_template(text, origin), origin)
    if ev is None:
        ev = Evaluator.__new__(Evaluator)
        ev.cwd = Path.cwd()
        ev.count_index = ev.each = None
    out: list[str] = []

    def value(expr: str, scope: dict[str, Any]) -> Any:
        return ev.eval(parse_expression(expr), scope, allow_roots=False)

    def run(nodes: list[Any], scope: dict[str, Any]) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Seq):
                out.append(to_string(value(node.expr, scope), f"{origin}: ${{{node.expr}}}"))
            elif node.seq.kind == "if":
                cond = to_bool(value(node.seq.expr, scope), f"{origin}: %{{if {node.seq.expr}}}")
                run(node.body if cond else node.orelse, scope)
            else:
                for key, item in _iterate(value(node.seq.expr, scope), f"{origin}: %{{for}}"):
                    inner = dict(scope)
                    if len(node.seq.names) == 2:
                        inner[node.seq.names[0]], inner[node.seq.names[1]] = key, item
                    else:
                        inner[node.seq.names[0]] = item
                    run(node.body, inner)

    run(nodes, dict(variables))
    return "".join(out)
