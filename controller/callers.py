"""Who a call to the controller comes from: the peer its certificate names, or, for a call a
follower replica relays to the leader (a relay's session, an operator's admin call), the one
the follower says it relays for.

A follower checks the certificate of whoever called it before it relays anything, and says
whom it relays for in the call's metadata (`ON_BEHALF_OF`, an identity URI). The leader
believes that only from a controller certificate of its own mesh: a relay or an operator
cannot claim to be someone else by setting the header.
"""

from __future__ import annotations

import grpc

from skymesh import identity
from skymesh.identity import Identity
from skymesh.net.tls import peer_identity

ON_BEHALF_OF = "skymesh-on-behalf-of"


def caller(context: grpc.ServicerContext, mesh: str | None) -> Identity | None:
    """The identity a call comes from (None: plaintext, or a certificate naming none). A
    replica of `mesh` relaying for someone who is not an identity of the mesh is answered
    as a caller without one."""
    who = peer_identity(context)
    if who is None or mesh is None or who.kind != "controller" or who.mesh != mesh:
        return who
    relayed = dict(context.invocation_metadata() or ()).get(ON_BEHALF_OF)
    if relayed is None:
        return who
    try:
        return identity.parse(relayed)
    except identity.IdentityError:
        return None


def on_behalf_of(who: Identity | None) -> tuple[tuple[str, str], ...]:
    """The metadata a follower relays a call with."""
    return () if who is None else ((ON_BEHALF_OF, who.uri),)
