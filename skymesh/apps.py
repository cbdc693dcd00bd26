"""The controller's keys: the apps' public token keys, and fabric keys.

The apps file says which apps may issue tokens, and with which keys. A YAML (or JSON) mapping
of app id to the app's Ed25519 public key, or a list of them while a rotation goes round:
each the base64url of the key's 32 raw bytes (`skymesh token keygen` prints it) or PEM:

    demo: u4ruyrZIdcwGDKFczgkquPjHjd0lrRAfUZ1S5pvOTQA
    shop:
      - nmnBDK38hPtW1ddMML4vZohZKXiltZHrXwMopMWzb7U   # the new key
      - 46GhzcfabD54avmQqhZS6KMduOYMVM72Wrp2TS13QRU   # the old one, until its tokens expire

The app's server keeps the private key and signs tokens with it; a token's `kid` names the
key (skymesh.token.key_id). The controller hands the public keys to its relays, which verify
client tokens with them and so can never mint one.

Fabric keys sign relay-to-relay datagrams: a file of hex keys (32 bytes each), one per line;
the first signs, the others are still accepted while a rotation goes round.
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
from pathlib import Path

import yaml

from skymesh import token, yamlfile

MAX_KEYS_PER_APP = 16
_APP = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")
# the first line of the apps files `skymesh up` wrote when tokens were HMAC-signed
_OLD_LOCAL_HEADER = "# app id: secret (made by `skymesh up` for the local mesh)"


class AppsError(ValueError):
    """A problem with an apps file, as `file: field: what is wrong`."""


def valid_app_id(app: object) -> bool:
    return isinstance(app, str) and _APP.match(app) is not None


def _read_yaml(path: Path) -> object:
    try:
        return yamlfile.load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise AppsError(f"{path}: cannot read: {e.strerror or e}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise AppsError(f"{path}: not valid YAML: {e}") from None
    except RecursionError:
        raise AppsError(f"{path}: not valid YAML: nested too deeply") from None


def load_apps(path: Path) -> dict[str, tuple[bytes, ...]]:
    """App id -> its raw Ed25519 public keys, from an apps file; AppsError naming the file and
    the field of every problem."""
    data = _read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise AppsError(f"{path}: expected a mapping of app id to public key(s)")
    problems, apps = [], {}
    for app, value in data.items():
        if not isinstance(app, str) or not _APP.match(app):
            problems.append(f"{path}: {app!r}: an app id is 1-64 letters, digits, '.', '_' "
                            "or '-'")
            continue
        texts = value if isinstance(value, list) else [value]
        if not texts:
            problems.append(f"{path}: {app}: no public key")
            continue
        if len(texts) > MAX_KEYS_PER_APP:
            problems.append(f"{path}: {app}: {len(texts)} public keys; at most "
                            f"{MAX_KEYS_PER_APP}")
            continue
        keys: list[bytes] = []
        for i, text in enumerate(texts, 1):
            field = f"{app}" if not isinstance(value, list) else f"{app}[{i}]"
            try:
                raw = token.decode_public_key(text)
            except token.KeyFormatError as e:
                hint = "" if not isinstance(text, str) or text.startswith("-----") else (
                    " (an Ed25519 public key: `skymesh token keygen --app "
                    f"{app}` makes a key pair; app secrets are no longer used)")
                problems.append(f"{path}: {field}: {e}{hint}")
                continue
            if raw in keys:
                problems.append(f"{path}: {field}: the same public key is listed twice")
                continue
            keys.append(raw)
        if len(keys) == len(texts):
            apps[app] = tuple(keys)
    if problems:
        raise AppsError("\n".join(problems))
    return apps


def private_key_file(apps_file: Path, app: str) -> Path:
    """Where the local mesh keeps `app`'s private signing key: beside its apps file."""
    return Path(apps_file).parent / f"{app}.key"


def write_private_key(path: Path, key) -> Path:
    """Write a signing key as PEM to a new file only its owner can read; AppsError if the
    file exists already (a key is never overwritten)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AppsError(f"{path}: exists already; not overwriting a private key") from None
    except OSError as e:
        raise AppsError(f"{path}: cannot write: {e.strerror or e}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(token.private_key_pem(key))
    return path


def read_private_key(path: Path):
    """The signing key in a private key file; AppsError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AppsError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return token.load_private_key(data)
    except token.KeyFormatError as e:
        raise AppsError(f"{path}: {e}") from None


def add_public_key(path: Path, app: str, raw: bytes) -> Path:
    """Add `raw` to `app`'s public keys in the apps file at `path` (first, and so the one
    listed as current), creating the file if needed. The file is rewritten: comments go."""
    path = Path(path)
    if not valid_app_id(app):
        raise AppsError(f"{path}: {app!r}: an app id is 1-64 letters, digits, '.', '_' or '-'")
    data: dict = {}
    if path.exists():
        if raw in load_apps(path).get(app, ()):  # (refuses to rewrite a broken file)
            return path
        data = dict(_read_yaml(path))  # type: ignore[arg-type]
    have = data.get(app, [])
    have = have if isinstance(have, list) else [have]
    if len(have) >= MAX_KEYS_PER_APP:
        raise AppsError(f"{path}: {app}: has {len(have)} public keys already; remove the "
                        "oldest first")
    data[app] = [token.encode_public_key(raw), *have]
    body = "# app id: its Ed25519 public key(s), newest first (`skymesh token keygen`)\n" + \
        yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(path)
    return path


def ensure_apps_file(path: Path, app: str = "demo") -> Path:
    """An apps file with one app and its public key, unless `path` exists already; the app's
    private key goes beside it (`private_key_file`, mode 0600), made unless it exists. An
    apps file of app secrets that `skymesh up` made before tokens were signed with keys is
    replaced."""
    path = Path(path)
    if path.exists():
        try:
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        except (OSError, UnicodeDecodeError):
            return path
        if first.strip() != _OLD_LOCAL_HEADER:
            return path
    key_file = private_key_file(path, app)
    if key_file.exists():
        key = read_private_key(key_file)
    else:
        key = token.generate_key()
        write_private_key(key_file, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"# app id: its Ed25519 public key (made by `skymesh up` for the local "
                   f"mesh; private key: {key_file.name})\n"
                   f"{app}: {token.encode_public_key(token.public_key_of(key))}\n",
                   encoding="utf-8")
    tmp.replace(path)
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
