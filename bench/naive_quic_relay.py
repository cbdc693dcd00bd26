"""A naive QUIC relay, the benchmark's lower reference: an aioquic server on a plain asyncio
event loop with aioquic's default settings (apart from accepting DATAGRAM frames) that
forwards every QUIC datagram it receives on one connection to every other joined connection,
decrypting and re-encrypting each one.

    python bench/naive_quic_relay.py --host 127.0.0.1 --port 0 --cert C --key K

Speaks just enough of the edge's protocol for the same load generator: the first line on a
client's first bidirectional stream is a join (its token is NOT checked), answered with
`{"type":"joined",...}`. Prints `ready HOST PORT` once listening; serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StreamDataReceived,
)

from skymesh.edgeproto import ALPN, MAX_DATAGRAM_FRAME_SIZE


class NaiveSession(QuicConnectionProtocol):
    def __init__(self, *args: Any, sessions: set[NaiveSession], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions = sessions
        self.buffer = b""
        self.joined = False

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, DatagramFrameReceived):
            for other in self.sessions:
                if other is not self:
                    other._quic.send_datagram_frame(event.data)
                    other.transmit()
        elif isinstance(event, StreamDataReceived) and not self.joined:
            self.buffer += event.data
            if b"\n" in self.buffer:
                line = self.buffer.split(b"\n", 1)[0]
                try:
                    msg = json.loads(line)
                except ValueError:
                    msg = {}
                channel = msg.get("channel", "") if isinstance(msg, dict) else ""
                self.joined = True
                self.sessions.add(self)
                reply = {"type": "joined", "uid": f"naive-{id(self):x}", "channel": channel,
                         "region": "naive", "privileges": ["join", "publish-media"]}
                self._quic.send_stream_data(event.stream_id, json.dumps(reply).encode() + b"\n")
                self.transmit()
        elif isinstance(event, ConnectionTerminated):
            self.sessions.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sessions.discard(self)
        super().connection_lost(exc)


async def run(host: str, port: int, cert: str, key: str) -> None:
    config = QuicConfiguration(is_client=False, alpn_protocols=[ALPN],
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE)
    config.load_cert_chain(cert, key)
    sessions: set[NaiveSession] = set()

    def protocol(*args: Any, **kwargs: Any) -> NaiveSession:
        return NaiveSession(*args, sessions=sessions, **kwargs)

    server = await serve(host, port, configuration=config, create_protocol=protocol)
    print(f"ready {host} {server._transport.get_extra_info('sockname')[1]}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    asyncio.run(run(args.host, args.port, args.cert, args.key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
