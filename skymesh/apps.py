"""The controller's secrets: app secrets and fabric keys.

App secrets say which apps may issue tokens, and with what secret. A YAML (or JSON) mapping of
app id to secret:

    demo: "a-long-random-secret"
    shop: "another-one"

The controller hands the secrets to its relays, which verify client tokens with them.

Fabric keys sign relay-to-relay datagrams: a file of hex keys (32 bytes each), one per line;
the first signs, the others are still accepted while a rotation goes round.
"""

from __future__ import annotations

import re
import secrets as _secrets
from pathlib import Path

import yaml

MIN_SECRET_CHARS = 16
_APP = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


class AppsError(ValueError):
    """A problem with an apps file, as `file: field: what is wrong`."""


def load_apps(path: Path) -> dict[str, bytes]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise AppsError(f"{path}: cannot read: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise AppsError(f"{path}: not valid YAML: {e}") from None
    except RecursionError:
        raise AppsError(f"{path}: not valid YAML: nested too deeply") from None
    if not isinstance(data, dict) or not data:
        raise AppsError(f"{path}: expected a mapping of app id to secret")
    problems, apps = [], {}
    for app, secret in data.items():
        if not isinstance(app, str) or not _APP.match(app):
            problems.append(f"{path}: {app!r}: an app id is 1-64 letters, digits, '.', '_' "
                            "or '-'")
        elif not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
            problems.append(f"{path}: {app}: the secret must be a string of at least "
                            f"{MIN_SECRET_CHARS} characters")
        else:
            apps[app] = secret.encode()
    if problems:
        raise AppsError("\n".join(problems))
    return apps


def ensure_apps_file(path: Path, app: str = "demo") -> Path:
    """An apps file with one app and a random secret, unless `path` exists already."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(f"# app id: secret (made by `skymesh up` for the local mesh)\n"
                        f"{app}: {_secrets.token_urlsafe(24)}\n", encoding="utf-8")
    return path


def load_fabric_keys(path: Path) -> list[bytes]:
    try:
        lines = Path(path).read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as e:
        raise AppsError(f"{path}: cannot read: {e}") from None
    keys = []
    for n, line in enumerate(lines, 1):
        try:
            key = bytes.fromhex(line)
        except ValueError:
            key = b""
        if len(key) < 16:
            raise AppsError(f"{path}: key {n}: expected at least 32 hex digits")
        keys.append(key)
    if not keys:
        raise AppsError(f"{path}: no key")
    return keys


def ensure_fabric_key_file(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(_secrets.token_hex(32) + "\n", encoding="ascii")
    return path
