"""skymesh.net.quic's fast paths against plain aioquic peers, over real connections on loopback:
what DatagramSender and AckSender write must read as ordinary QUIC to aioquic, and leave the
sender's loss recovery and congestion state as aioquic's own packet builder would; ACKs the
DatagramCatcher takes must clear what aioquic's own handling would; a transmit with nothing
to write must write nothing, and one with something must not be skipped."""

from __future__ import annotations

import asyncio
import ssl

import pytest
from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import DatagramFrameReceived, HandshakeCompleted, StreamDataReceived
from aioquic.tls import Epoch

from skymesh.certs import ensure_dev_ca, issue_cert
from skymesh.edgeproto import MAX_DATAGRAM_FRAME_SIZE
from skymesh.net import quic

DEADLINE = 5.0
ALPN = ["skymesh-test"]


@pytest.fixture
def certs(tmp_path):
    ca_cert, _ = ensure_dev_ca(tmp_path / "ca")
    cert, key = issue_cert(tmp_path / "srv", tmp_path / "ca", "srv", ["127.0.0.1"])
    return ca_cert, cert, key


class PlainPeer(QuicConnectionProtocol):
    """aioquic as it comes: every packet through its own parser."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.got: list[bytes] = []
        self.stream = b""
        self.arrived = asyncio.Event()
        self.want = 0

    def quic_event_received(self, event) -> None:
        if isinstance(event, StreamDataReceived):
            self.stream += event.data
        elif isinstance(event, DatagramFrameReceived):
            self.got.append(event.data)
            if len(self.got) >= self.want:
                self.arrived.set()


class FastServer(quic.Protocol):
    instances: list[FastServer] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ready = asyncio.Event()
        self.got: list[bytes] = []
        self.stream = b""
        FastServer.instances.append(self)

    def quic_event_received(self, event) -> None:
        if isinstance(event, HandshakeCompleted):
            self.ready.set()
        elif isinstance(event, DatagramFrameReceived):
            self.got.append(event.data)
        elif isinstance(event, StreamDataReceived):
            self.stream += event.data


class PlainServer(PlainPeer):
    instances: list[PlainServer] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ready = asyncio.Event()
        PlainServer.instances.append(self)

    def quic_event_received(self, event) -> None:
        if isinstance(event, HandshakeCompleted):
            self.ready.set()
        super().quic_event_received(event)


class FastClient(quic.Protocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.got: list[bytes] = []

    def quic_event_received(self, event) -> None:
        if isinstance(event, DatagramFrameReceived):
            self.got.append(event.data)


def _configs(certs, **server_settings) -> tuple[QuicConfiguration, QuicConfiguration]:
    ca, cert, key = certs
    server = QuicConfiguration(is_client=False, alpn_protocols=ALPN,
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
                               **server_settings)
    server.load_cert_chain(cert, key)
    client = QuicConfiguration(is_client=True, alpn_protocols=ALPN, server_name="127.0.0.1",
                               max_datagram_frame_size=MAX_DATAGRAM_FRAME_SIZE,
                               verify_mode=ssl.CERT_REQUIRED)
    client.load_verify_locations(str(ca))
    return server, client


async def _until(predicate, what: str) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)
    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _pair(certs, **server_settings):
    """A FastServer and a PlainPeer client, connected: an async context manager."""
    FastServer.instances.clear()
    server_cfg, client_cfg = _configs(certs, **server_settings)

    class Pair:
        async def __aenter__(self):
            self.server = await serve("127.0.0.1", 0, configuration=server_cfg,
                                      create_protocol=FastServer)
            port = self.server._transport.get_extra_info("sockname")[1]
            self.connection = connect("127.0.0.1", port, configuration=client_cfg,
                                      create_protocol=PlainPeer)
            self.client = await self.connection.__aenter__()
            await _until(lambda: FastServer.instances, "the server's session")
            self.fast = FastServer.instances[0]
            await asyncio.wait_for(self.fast.ready.wait(), DEADLINE)
            return self

        async def __aexit__(self, *exc):
            await self.connection.__aexit__(*exc)
            self.server.close()

    return Pair()


def test_datagrams_from_the_fast_path_read_as_plain_quic_and_are_acknowledged(certs):
    async def main():
        async with _pair(certs) as p:
            sent = [bytes([i % 251]) * n for i, n in enumerate([0, 1, 2, 3, 50, 1100] * 40)]
            p.client.want = len(sent)
            for data in sent:
                p.fast._quic.send_datagram_frame(data)
            p.fast.transmit()  # the rest as the congestion window opens with ACKs
            await asyncio.wait_for(p.client.arrived.wait(), DEADLINE)
            assert p.client.got == sent
            # nearly every one by the fast path: when the congestion window opens between its
            # pass and aioquic's own transmit, a datagram may leave the general way (correctly;
            # `make test` saw 239 of 240 once)
            assert p.fast._sender.sent >= 0.95 * len(sent)
            # the plain peer acknowledged them all: nothing is left in flight
            loss = p.fast._quic._loss
            await _until(lambda: loss.bytes_in_flight == 0, "acknowledgements")
            space = p.fast._quic._spaces[Epoch.ONE_RTT]
            assert not space.sent_packets
            assert space.largest_acked_packet >= p.fast._quic._packet_number - 2
            # and the connection still carries ordinary traffic both ways
            p.client._quic.send_datagram_frame(b"back")
            p.client.transmit()
            await _until(lambda: p.fast.got == [b"back"], "a datagram from the plain peer")

    asyncio.run(main())


def test_the_congestion_window_holds_back_what_does_not_fit(certs):
    async def main():
        async with _pair(certs) as p:
            q = p.fast._quic
            cc = q._loss._cc
            cc.congestion_window = 6000 + q._loss.bytes_in_flight
            for _ in range(10):
                q.send_datagram_frame(b"m" * 1100)
            packets = quic.DatagramSender(q).send(asyncio.get_running_loop().time())
            assert packets and len(packets) == 6000 // len(packets[0])
            assert len(q._datagrams_pending) == 10 - len(packets)
            assert q._loss.bytes_in_flight <= cc.congestion_window

    asyncio.run(main())


def test_a_closing_connection_is_left_to_aioquic(certs):
    async def main():
        async with _pair(certs) as p:
            q = p.fast._quic
            q.send_datagram_frame(b"late")
            q.close(error_code=0, reason_phrase="bye")
            assert quic.DatagramSender(q).send(0.0) == []
            assert list(q._datagrams_pending) == [b"late"]

    asyncio.run(main())


def test_segmented_sender_sends_runs_on_the_transports_socket_and_closes_with_it():
    import gc
    import socket

    async def main():
        loop = asyncio.get_running_loop()
        rcv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rcv.bind(("127.0.0.1", 0))
        rcv.settimeout(DEADLINE)
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        sender = quic.segmented_sender(transport)
        assert sender is not None and quic.segmented_sender(transport) is sender
        run = [bytes([i]) * 1100 for i in range(12)] + [b"last"]
        sender.send_now(run, rcv.getsockname())
        got = []
        for _ in run:
            data, addr = rcv.recvfrom(65535)
            got.append(data)
            assert addr[1] == port  # from the transport's own address
        assert got == run
        dup = sender.sock
        transport.close()
        assert quic.segmented_sender(transport) is None
        await asyncio.sleep(0)  # the transport lets go of its socket on the next turn
        del transport, sender
        gc.collect()
        assert dup.fileno() == -1  # the duplicate descriptor closed with the transport
        rcv.close()

    asyncio.run(main())


def test_acks_of_the_fast_paths_datagrams_are_taken_on_the_fast_path_too(certs):
    async def main():
        async with _pair(certs) as p:
            sent = [bytes([i]) * 200 for i in range(30)]
            p.client.want = len(sent)
            for i, data in enumerate(sent):  # one at a time, so that the plain peer ACKs each
                p.fast._quic.send_datagram_frame(data)
                p.fast.transmit()
                await _until(lambda i=i: len(p.client.got) > i, "a datagram")
            loss = p.fast._quic._loss
            await _until(lambda: loss.bytes_in_flight == 0, "acknowledgements")
            assert not p.fast._quic._spaces[Epoch.ONE_RTT].sent_packets
            assert p.fast._catcher.acks >= len(sent) // 2  # the plain peer's ACKs, taken

    asyncio.run(main())


def test_a_transmit_with_nothing_to_write_writes_nothing_and_stream_data_still_goes(certs):
    async def main():
        async with _pair(certs) as p:
            q = p.fast._quic
            await _until(lambda: q._loss.bytes_in_flight == 0
                         and q._spaces[Epoch.ONE_RTT].ack_at is None, "a quiet connection")
            number = q._packet_number
            for _ in range(5):
                p.fast.transmit()
            assert q._packet_number == number  # not even an empty packet
            assert p.fast._timer is not None  # the timers still run (idle, at least)
            # the plain peer's stream data reaches the fast side, whose ACK is not skipped
            stream = p.client._quic.get_next_available_stream_id()
            p.client._quic.send_stream_data(stream, b"hello")
            p.client.transmit()
            await _until(lambda: p.fast.stream == b"hello", "the stream's data")
            loss = p.client._quic._loss
            await _until(lambda: loss.bytes_in_flight == 0, "the fast side's ACK")

    asyncio.run(main())


def test_acks_from_the_fast_path_read_as_plain_quic(certs):
    """A fast client ACKs a plain server's datagrams with AckSender's packets: the server's
    loss recovery must see every one acknowledged."""
    async def main():
        PlainServer.instances.clear()
        server_cfg, client_cfg = _configs(certs)
        server = await serve("127.0.0.1", 0, configuration=server_cfg,
                             create_protocol=PlainServer)
        port = server._transport.get_extra_info("sockname")[1]
        try:
            async with connect("127.0.0.1", port, configuration=client_cfg,
                               create_protocol=FastClient) as client:
                await _until(lambda: PlainServer.instances, "the server's session")
                plain = PlainServer.instances[0]
                await asyncio.wait_for(plain.ready.wait(), DEADLINE)
                await _until(lambda: plain._quic._handshake_confirmed
                             and client._quic._handshake_confirmed, "a confirmed handshake")
                sent = [bytes([i]) * 100 for i in range(20)]
                for i, data in enumerate(sent):
                    plain._quic.send_datagram_frame(data)
                    plain.transmit()
                    await _until(lambda i=i: len(client.got) > i, "a datagram")
                assert client.got == sent
                loss = plain._quic._loss
                await _until(lambda: loss.bytes_in_flight == 0, "the fast client's ACKs")
                assert not plain._quic._spaces[Epoch.ONE_RTT].sent_packets
                assert client._acker is not None and client._acker.sent >= len(sent) // 2
                assert plain._quic._state.name == "CONNECTED"  # nothing it refused
        finally:
            server.close()

    asyncio.run(main())


def test_flow_control_is_raised_though_transmits_with_only_acks_skip_aioquic(certs):
    """The fast side's window for the peer's data is small: aioquic raises it (MAX_DATA,
    MAX_STREAM_DATA) as the data comes, and a transmit that takes the fast path for the ACK
    must not leave that unsaid, or the peer stalls."""
    async def main():
        async with _pair(certs, max_data=8192, max_stream_data=4096) as p:
            data = bytes(range(256)) * 256  # 64 KiB: 16 times the stream's first window
            stream = p.client._quic.get_next_available_stream_id()
            p.client._quic.send_stream_data(stream, data)
            p.client.transmit()
            await _until(lambda: p.fast.stream == data, "64 KiB through a 4 KiB window")

    asyncio.run(main())


def test_stream_data_from_the_fast_path_reads_as_plain_quic_and_what_is_lost_goes_again(certs):
    """Lines written by StreamSender arrive at a plain aioquic peer whole and in order, a
    write larger than a packet included; the first packet is dropped on the way, and loss
    recovery sends its data again; in the end nothing is left in flight."""
    async def main():
        async with _pair(certs) as p:
            stream = p.client._quic.get_next_available_stream_id()
            p.client._quic.send_stream_data(stream, b"hi")
            p.client.transmit()
            await _until(lambda: p.fast.stream == b"hi", "the client's stream")
            q = p.fast._quic
            await _until(lambda: q._spaces[Epoch.ONE_RTT].ack_at is None
                         and q._loss.bytes_in_flight == 0, "a quiet connection")
            transport = p.fast._transport
            real, dropped = transport.sendto, []

            def lossy(data, addr=None):
                if not dropped:
                    dropped.append(data)
                    return
                real(data, addr)
            transport.sendto = lossy
            lines = [f"line {i}\n".encode() for i in range(50)]
            for line in lines:
                q.send_stream_data(stream, line)
                p.fast.transmit()
            big = bytes(range(256)) * 20  # several packets' worth in one write
            q.send_stream_data(stream, big)
            p.fast.transmit()
            want = b"".join(lines) + big
            await _until(lambda: p.client.stream == want, "every line, the lost one again")
            assert dropped and p.fast._streamer is not None and p.fast._streamer.sent >= 50
            await _until(lambda: q._loss.bytes_in_flight == 0, "acknowledgements")
            assert not q._spaces[Epoch.ONE_RTT].sent_packets

    asyncio.run(main())
