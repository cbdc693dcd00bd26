"""Configuration files: a YAML document checked against a schema of fields, each problem
reported as `file: field: what is wrong`, every problem at once.

A `Schema` is a list of `Field`s, each a dotted path in the document (`tls.cert`) and the
settings name it fills (the command's option dest: `cert`). What the command layer does with
the settings (flags override them) is its own business: this module reads text and knows no
command. Relative paths in a file are relative to the file's directory, as an operator who
keeps a config beside its certificates expects.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from skymesh import yamlfile

HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z.\-]+):(\d{1,5})")
DNS_NAME = re.compile(r"(?=.{1,253}$)[0-9A-Za-z]([0-9A-Za-z\-]{0,61}[0-9A-Za-z])?"
                      r"(\.[0-9A-Za-z]([0-9A-Za-z\-]{0,61}[0-9A-Za-z])?)*")


MAX_NUMBER = 1e15  # beyond any setting's sense, and within a float's exact integers


class ConfigError(ValueError):
    """Problems in a configuration file, each `file: field: what is wrong`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


class Invalid(ValueError):
    """A converter's refusal: the message says what is wrong with the value."""


@dataclass(frozen=True)
class Field:
    """One setting: where it sits in the document (`probe.interval`), the settings name it
    fills, how a value is checked and converted (raises Invalid), and one line for people."""

    path: str
    dest: str
    convert: Callable[[Any, Path], Any]
    help: str = ""


class Schema:
    def __init__(self, what: str, fields: Iterable[Field]) -> None:
        self.what = what  # "relay", "controller": named in the errors of an empty file
        self.fields = {f.path: f for f in fields}
        sections = {p.rsplit(".", k)[0] for p in self.fields for k in range(1, p.count(".") + 1)}
        clash = sections & set(self.fields)
        if clash:
            raise ValueError(f"{sorted(clash)} are both fields and sections")
        self.sections = sections

    def load(self, path: Path | str) -> dict[str, Any]:
        """The settings of the file at `path`; ConfigError names the file in every problem."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError([f"{path}: cannot read: {e}"]) from None
        return self.loads(text, str(path), path.resolve().parent)

    def loads(self, text: str, origin: str, base: Path) -> dict[str, Any]:
        """The settings in `text` (read from `origin`; relative paths against `base`)."""
        try:
            data = yamlfile.load(text)
        except yaml.YAMLError as e:
            where = ""
            mark = getattr(e, "problem_mark", None)
            if mark is not None:
                where = f"line {mark.line + 1} column {mark.column + 1}: "
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError([f"{origin}: {where}not valid YAML: {problem}"]) from None
        if data is None:
            raise ConfigError([f"{origin}: the file is empty: expected the {self.what}'s "
                               "settings"])
        problems: list[str] = []
        values: dict[str, Any] = {}
        self._walk(data, "", origin, base, values, problems)
        if problems:
            raise ConfigError(problems)
        return values

    def _walk(self, data: Any, prefix: str, origin: str, base: Path,
              values: dict[str, Any], problems: list[str]) -> None:
        where = prefix.rstrip(".") or "document"
        if not isinstance(data, dict):
            problems.append(f"{origin}: {where}: expected a mapping of fields, got "
                            f"{_kind(data)}")
            return
        for key, value in data.items():
            if not isinstance(key, str):
                problems.append(f"{origin}: {where}: field names are strings, got {key!r}")
                continue
            path = prefix + key
            if "." in key:
                problems.append(f"{origin}: {path}: field names have no dots: write "
                                f"{key.partition('.')[0]}: {{{key.partition('.')[2]}: ...}}")
                continue
            if path in self.fields:
                field = self.fields[path]
                if value is None:  # `key:` with nothing: the default, as if absent
                    continue
                try:
                    values[field.dest] = field.convert(value, base)
                except Invalid as e:
                    problems.append(f"{origin}: {path}: {e}")
            elif path in self.sections:
                if value is not None:
                    self._walk(value, path + ".", origin, base, values, problems)
            else:
                problems.append(f"{origin}: {path}: unknown field{self._suggest(path)}")

    def _suggest(self, path: str) -> str:
        """A near name in the same section; else the same name in another section (a field
        put in the wrong place); else what this section holds."""
        prefix, _, name = path.rpartition(".")
        known = [*self.fields, *self.sections]
        here = sorted(p.rpartition(".")[2] for p in known if p.rpartition(".")[0] == prefix)
        close = difflib.get_close_matches(name, here, n=1, cutoff=0.6)
        if close:
            return f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)"
        elsewhere = sorted(p for p in known if p.rpartition(".")[2] == name)
        if elsewhere:
            return f" (did you mean {elsewhere[0]}?)"
        return f" (known here: {', '.join(here)})" if here else ""


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


# -- converters: (value, base directory) -> setting; Invalid says what is wrong ----------------

def text(pattern: str | None = None, hint: str = "") -> Callable[[Any, Path], str]:
    """A non-empty string, matching `pattern` when given (described by `hint`)."""
    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"expected a non-empty string, got {_kind(value)}")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise Invalid(f"expected {hint or 'a match of ' + pattern}, got {value!r}")
        return value
    return convert


def choice(*options: str) -> Callable[[Any, Path], str]:
    def convert(value: Any, base: Path) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            raise Invalid(f"expected one of {', '.join(options)}, got {_kind(value)}")
        return value.lower()
    return convert


def host_port(value: Any, base: Path) -> str:
    """HOST:PORT (an IPv6 host in brackets), port 0-65535."""
    if not isinstance(value, str) or not (m := HOST_PORT.fullmatch(value.strip())):
        raise Invalid(f"expected HOST:PORT, got {_kind(value)}")
    try:
        host(value.strip().rpartition(":")[0], base)
    except Invalid:
        raise Invalid(f"expected HOST:PORT, HOST a DNS name or an IP address, got "
                      f"{value!r}") from None
    if int(m.group(1)) > 65535:
        raise Invalid(f"port {m.group(1)} is not in 0-65535")
    return value.strip()


def host(value: Any, base: Path) -> str:
    """A DNS name or an IP address, without a port."""
    if isinstance(value, str):
        name = value.strip().strip("[]")
        try:
            return str(ipaddress.ip_address(name))
        except ValueError:
            if DNS_NAME.fullmatch(name) and not name.replace(".", "").isdigit():
                return name
    raise Invalid(f"expected a DNS name or an IP address, got {_kind(value)}")


def host_ports(value: Any, base: Path) -> str:
    """A list of HOST:PORT (or one string of them separated by commas), as "A,B,C"."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise Invalid(f"expected a list of HOST:PORT, got {_kind(value)}")
    out = []
    for i, item in enumerate(items):
        try:
            out.append(host_port(item.strip() if isinstance(item, str) else item, base))
        except Invalid as e:
            raise Invalid(f"item {i + 1}: {e}") from None
    if len(set(out)) != len(out):
        raise Invalid(f"an address is listed twice in {out}")
    return ",".join(out)


def names(pattern: str, hint: str) -> Callable[[Any, Path], str]:
    """A list of names matching `pattern` (or one string of them, comma-separated), as
    "a,b"."""
    def convert(value: Any, base: Path) -> str:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise Invalid(f"expected a list of {hint}, got {_kind(value)}")
        out = []
        for item in items:
            if not isinstance(item, str) or not re.fullmatch(pattern, item.strip()):
                raise Invalid(f"expected a list of {hint}, got {item!r} in it")
            out.append(item.strip())
        return ",".join(out)
    return convert


def path(value: Any, base: Path) -> Path:
    """A file or directory path; a relative one is relative to the file's directory."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a path, got {_kind(value)}")
    try:
        p = Path(value).expanduser()
    except RuntimeError:  # ~someone who is no user here
        raise Invalid(f"{value!r}: no such user's home directory") from None
    return p if p.is_absolute() else base / p


def number(low: float | None = None, high: float | None = None, *, integer: bool = False,
           low_open: bool = False) -> Callable[[Any, Path], float | int]:
    """A number in [low, high] (`low_open`: above low); `integer`: a whole number."""
    def convert(value: Any, base: Path) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (integer and not isinstance(value, int)):
            raise Invalid(f"expected {'a whole number' if integer else 'a number'}, got "
                          f"{_kind(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"expected a finite number, got {value}")
        if abs(value) > MAX_NUMBER:
            raise Invalid(f"expected a number of sensible size, got one of {len(str(value))} "
                          "digits" if isinstance(value, int) else f"{value} is too large")
        if low is not None and (value <= low if low_open else value < low):
            raise Invalid(f"must be {'above' if low_open else 'at least'} {low}, got {value}")
        if high is not None and value > high:
            raise Invalid(f"must be at most {high}, got {value}")
        return value if integer else float(value)
    return convert


def positive(value: Any, base: Path) -> float:
    return number(0, low_open=True)(value, base)


def positive_int(value: Any, base: Path) -> int:
    return number(1, integer=True)(value, base)


def boolean(value: Any, base: Path) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {_kind(value)}")
    return value


DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_S = 10 * 366 * 86400


def seconds(text: str) -> int:
    """Seconds from `90s`, `15m`, `24h`, `7d` or plain seconds; ValueError otherwise."""
    m = DURATION.fullmatch(text)
    if not m or len(m.group(1)) > 12:
        raise ValueError(f"expected a duration such as 24h, 30m, 90s, 7d or seconds, got "
                         f"{text!r}")
    out = int(m.group(1)) * DURATION_UNITS[m.group(2)]
    if out > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than ten years")
    return out


def duration(value: Any, base: Path) -> int:
    """A duration in the file: 24h, 30m, 90s, 7d, or a whole number of seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if value > MAX_DURATION_S:
            raise Invalid(f"{value} s is longer than ten years")
        return value
    if isinstance(value, str):
        try:
            return seconds(value)
        except ValueError as e:
            raise Invalid(str(e)) from None
    raise Invalid(f"expected a duration such as 24h, 30m, 90s, 7d or seconds, got "
                  f"{_kind(value)}")


def checked(convert: Callable[[Any, Path], Any],
            check: Callable[[Any], Any]) -> Callable[[Any, Path], Any]:
    """`convert`, then `check` (a parser of the command's own, raising ValueError) on what it
    gave: the file is refused by the rule the flag is."""
    def both(value: Any, base: Path) -> Any:
        out = convert(value, base)
        try:
            check(out)
        except ValueError as e:
            raise Invalid(str(e)) from None
        return out
    return both
