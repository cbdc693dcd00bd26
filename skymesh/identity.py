"""Who a certificate speaks for: SPIFFE IDs of the mesh's controllers, relays and admins, and
what each role may do. Pure: no I/O.

A mesh certificate carries exactly one URI subject alternative name::

    spiffe://<mesh>/controller/<id>
    spiffe://<mesh>/relay/<region>/<node>
    spiffe://<mesh>/admin/<role>/<name>        role: viewer | operator

`<mesh>` is the trust domain (the mesh's name, also carried by its CA certificate). The path
segments are what the controller checks a peer against: a relay may only speak for its region
and node, an admin only do what its role allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = ("controller", "relay", "admin")
ROLES = ("viewer", "operator")
SCHEME = "spiffe://"
DEFAULT_MESH = "skymesh"

# SPIFFE: a trust domain is lowercase letters, digits, '.', '-' and '_'; a path segment
# letters, digits, '.', '-' and '_' (and never '.' or '..').
_MESH = re.compile(r"[a-z0-9._-]{1,255}\Z")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}\Z")


class IdentityError(ValueError):
    """A SPIFFE ID that is not one of the mesh's identities."""


@dataclass(frozen=True)
class Identity:
    """One peer of the mesh, as its certificate names it."""

    mesh: str
    kind: str  # controller | relay | admin
    name: str  # controller id, relay node id, admin name
    region: str = ""  # relays only
    role: str = ""  # admins only: viewer | operator

    @property
    def uri(self) -> str:
        if self.kind == "relay":
            return f"{SCHEME}{self.mesh}/relay/{self.region}/{self.name}"
        if self.kind == "admin":
            return f"{SCHEME}{self.mesh}/admin/{self.role}/{self.name}"
        return f"{SCHEME}{self.mesh}/controller/{self.name}"

    def __str__(self) -> str:
        return self.uri.removeprefix(f"{SCHEME}{self.mesh}/")

    def may(self, action: str) -> bool:
        """Whether this identity may call an admin action of kind `action` ("read" or
        "change"). Relays and controllers call no admin RPCs."""
        if self.kind != "admin":
            return False
        if action == "read":
            return self.role in ROLES
        return self.role == "operator"


def stranger(who: Identity | None, mesh: str) -> str:
    """Why a verified peer is no identity of `mesh` ("" when it is one)."""
    if who is None:
        return "the client certificate names no identity of the mesh"
    if who.mesh != mesh:
        return f"certificate of mesh {who.mesh!r}, not {mesh!r}"
    return ""


def check_mesh(mesh: str) -> str:
    if not _MESH.match(mesh) or mesh.strip(".") != mesh:
        raise IdentityError(f"mesh name {mesh!r}: use lowercase letters, digits, '.', '-' "
                            "and '_' (a SPIFFE trust domain)")
    return mesh


def _segment(what: str, value: str) -> str:
    if not _SEGMENT.match(value) or value in (".", ".."):
        raise IdentityError(f"{what} {value!r}: use 1-128 letters, digits, '.', '-' or '_'")
    return value


def controller(mesh: str, controller_id: str) -> Identity:
    return Identity(check_mesh(mesh), "controller", _segment("controller id", controller_id))


def relay(mesh: str, region: str, node: str) -> Identity:
    return Identity(check_mesh(mesh), "relay", _segment("node id", node),
                    region=_segment("region", region))


def admin(mesh: str, name: str, role: str) -> Identity:
    if role not in ROLES:
        raise IdentityError(f"admin role {role!r}: one of {', '.join(ROLES)}")
    return Identity(check_mesh(mesh), "admin", _segment("admin name", name), role=role)


def parse(uri: str) -> Identity:
    """The identity a SPIFFE ID names; IdentityError says what is wrong with it."""
    if not uri.startswith(SCHEME):
        raise IdentityError(f"{uri!r} is not a SPIFFE ID (spiffe://<mesh>/...)")
    mesh, _, path = uri[len(SCHEME):].partition("/")
    parts = path.split("/")
    try:
        if parts[0] == "controller" and len(parts) == 2:
            return controller(mesh, parts[1])
        if parts[0] == "relay" and len(parts) == 3:
            return relay(mesh, parts[1], parts[2])
        if parts[0] == "admin" and len(parts) == 3:
            return admin(mesh, parts[2], parts[1])
    except IdentityError as e:
        raise IdentityError(f"{uri!r}: {e}") from None
    raise IdentityError(f"{uri!r} names none of /controller/<id>, /relay/<region>/<node>, "
                        "/admin/<role>/<name>")


def mesh_of(uri: str) -> str:
    """The trust domain of a CA's SPIFFE ID (spiffe://<mesh>)."""
    if not uri.startswith(SCHEME):
        raise IdentityError(f"{uri!r} is not a SPIFFE ID")
    return check_mesh(uri[len(SCHEME):].rstrip("/"))
