"""Keepalive, ping policing and idle close of tidal's HTTP/2 gRPC transport, driven from a raw
socket against a real ``TidalGrpcService``, plus the settings that configure them (Triton's
``--grpc-keepalive-*`` / ``--grpc-http2-*`` flags and ``--grpc-max-connection-idle-ms``)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tidal.config import ServerSettings
from tidal.frontends.grpc.h2 import Keepalive
from tidal.frontends.grpc.h2 import frames as f
from tidal.frontends.grpc.h2.messages import frame
from tidal.serve import _keepalive

from ..settings_helpers import clear_tidal_environment, settings
from .test_grpc_h2_connection import INFER, STREAM, Peer, _request, _status, serving

FAST = {"time_ms": 100, "timeout_ms": 500}  # a ping after 0.1 s quiet, an ACK due in 0.5 s


async def _next_ping(peer: Peer, timeout: float) -> bytes | None:
    """The payload of the server's next PING (not an ACK) within ``timeout``; None if none."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            kind, flags, _sid, payload = await peer.frame(timeout=left)
        except TimeoutError:
            return None
        if kind == f.PING and not flags & f.ACK:
            return payload
        if kind == f.GOAWAY:
            raise AssertionError(f"GOAWAY {f.u32(payload[4:8])}: {payload[8:]!r}")
    return None


async def _goaway(peer: Peer) -> tuple[int, bytes]:
    """(error code, debug data) of the next GOAWAY."""
    while True:
        kind, _flags, _sid, payload = await peer.frame()
        if kind == f.GOAWAY:
            return f.u32(payload[4:8]), payload[8:]


async def _unary(peer: Peer, sid: int) -> None:
    message = frame(_request(2).SerializeToString())
    peer.send(peer.headers(sid, INFER) + f.head(len(message), f.DATA, f.END_STREAM, sid) + message)
    _, _, trailers, _ = await peer.response(sid)
    assert _status(trailers) == ("0", "")


# -- server keepalive pings ------------------------------------------------------------------


def test_an_unanswered_keepalive_ping_closes_the_connection(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))  # a call open, waiting for input
        await asyncio.sleep(0.05)
        (connection,) = service.connections
        (task,) = connection.tasks
        started = time.monotonic()
        assert await _next_ping(peer, timeout=2.0) is not None
        assert await peer.closed()  # no ACK: the connection goes, and its call with it
        assert time.monotonic() - started < 3.0
        await asyncio.sleep(0.05)
        assert task.done() and not service.connections

    serving(ident_repo, body, keepalive=Keepalive(**FAST))


def test_answered_pings_keep_the_connection_and_its_calls(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))
        for _ in range(4):  # every ping answered: the connection and its call stay
            payload = await _next_ping(peer, timeout=2.0)
            assert payload is not None
            peer.send(f.ping_ack(payload))
        (connection,) = service.connections
        assert len(connection.tasks) == 1
        await _unary(peer, 3)
        peer.close()

    serving(ident_repo, body, keepalive=Keepalive(**FAST, max_pings_without_data=0))


def test_no_keepalive_ping_without_calls_unless_permitted(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK)
        await _unary(peer, 1)  # a call that ended: none open now
        return await _next_ping(peer, timeout=0.6)

    assert serving(ident_repo, body, keepalive=Keepalive(**FAST)) is None
    permitted = Keepalive(**FAST, permit_without_calls=True)
    assert serving(ident_repo, body, keepalive=permitted) is not None


def test_input_postpones_the_keepalive_ping(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))
        message = frame(_request(2).SerializeToString())
        for _ in range(8):  # a request every 0.05 s: never 0.3 s without input
            await asyncio.sleep(0.05)
            peer.send(f.head(len(message), f.DATA, 0, 1) + message)
        pinged_early = False
        while True:  # read what came so far: responses, but no PING
            try:
                kind, flags, _, _ = await peer.frame(timeout=0.02)
            except TimeoutError:
                break
            pinged_early |= kind == f.PING and not flags & f.ACK
        assert not pinged_early
        assert await _next_ping(peer, timeout=2.0) is not None  # then quiet: a ping

    serving(ident_repo, body, keepalive=Keepalive(time_ms=300, timeout_ms=1000))


def test_pings_without_data_are_limited(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))  # open, but nothing is sent back
        count = 0
        while count < 5 and (payload := await _next_ping(peer, timeout=0.5)) is not None:
            count += 1
            peer.send(f.ping_ack(payload))
        return count

    # two pings, then the rest are spaced a minute apart; with 0 they go on
    assert serving(ident_repo, body, keepalive=Keepalive(**FAST)) == 2
    assert serving(ident_repo, body, keepalive=Keepalive(**FAST, max_pings_without_data=0)) == 5


# -- the client's pings ---------------------------------------------------------------------


def _ping(n: int) -> bytes:
    return f.ping(n.to_bytes(8, "big"))


def test_too_many_client_pings_get_goaway_too_many_pings(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + b"".join(_ping(n) for n in range(4)))  # 3 early pings
        code, debug = await _goaway(peer)
        assert (code, debug) == (f.ENHANCE_YOUR_CALM, b"too_many_pings")
        assert await peer.closed()

    serving(ident_repo, body)


def test_two_early_pings_are_tolerated_and_zero_strikes_means_no_limit(ident_repo):
    async def body(service, pings):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + b"".join(_ping(n) for n in range(pings)))
        acks = 0
        while acks < pings:
            kind, flags, _, _ = await peer.frame()
            assert kind != f.GOAWAY
            acks += kind == f.PING and bool(flags & f.ACK)
        await _unary(peer, 1)  # still serving
        peer.close()

    serving(ident_repo, lambda service: body(service, 3))  # the first is on time, then 2 strikes
    serving(ident_repo, lambda service: body(service, 50), keepalive=Keepalive(max_ping_strikes=0))


def test_pings_between_responses_are_no_strikes(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK)
        for n in range(10):  # the server sends headers and data between any two pings
            peer.send(_ping(n))
            await _unary(peer, 2 * n + 1)
        peer.close()

    serving(ident_repo, body)


def test_early_pings_strike_while_calls_are_open(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))
        await asyncio.sleep(0.05)
        peer.send(b"".join(_ping(n) for n in range(4)))
        return await _goaway(peer)

    short = Keepalive(min_recv_ping_interval_without_data_ms=1)
    code, debug = serving(ident_repo, body)  # 5 minutes expected between pings by default
    assert (code, debug) == (f.ENHANCE_YOUR_CALM, b"too_many_pings")

    async def spaced(service):  # 1 ms expected: pings 20 ms apart are fine
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))
        for n in range(6):
            await asyncio.sleep(0.02)
            peer.send(_ping(n))
        await _unary(peer, 3)
        peer.close()

    serving(ident_repo, spaced, keepalive=short)


# -- idle connections ------------------------------------------------------------------------


def test_an_idle_connection_gets_goaway_and_is_closed(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK)
        await _unary(peer, 1)
        started = time.monotonic()
        code, debug = await _goaway(peer)
        assert (code, debug) == (f.NO_ERROR, b"max_idle")
        assert await peer.closed()
        assert 0.15 <= time.monotonic() - started < 2.0

    serving(ident_repo, body, keepalive=Keepalive(max_connection_idle_ms=200))


def test_a_connection_with_a_call_open_is_not_idle(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK + peer.headers(1, STREAM))
        await asyncio.sleep(0.6)  # three times the idle limit, a call open all along
        await _unary(peer, 3)
        assert len(service.connections) == 1
        peer.close()

    serving(ident_repo, body, keepalive=Keepalive(max_connection_idle_ms=200))


def test_idle_connections_stay_open_by_default(ident_repo):
    async def body(service):
        peer = await Peer.connect(service.port)
        peer.send(f.SETTINGS_ACK)
        await asyncio.sleep(1.2)  # a tick a second by default: a close would have come
        await _unary(peer, 1)
        peer.close()

    serving(ident_repo, body)


# -- settings --------------------------------------------------------------------------------


def test_triton_defaults():
    defaults = ServerSettings()
    assert _keepalive(defaults) == Keepalive()
    assert Keepalive() == Keepalive(
        time_ms=7_200_000,
        timeout_ms=20_000,
        permit_without_calls=False,
        max_pings_without_data=2,
        min_recv_ping_interval_without_data_ms=300_000,
        max_ping_strikes=2,
        max_connection_idle_ms=0,
    )


def test_flags_and_environment_variables(monkeypatch):
    clear_tidal_environment(monkeypatch)
    monkeypatch.setenv("TIDAL_GRPC_HTTP2_MAX_PING_STRIKES", "0")
    result = settings(
        "--grpc-keepalive-time=10000",
        "--grpc-keepalive-timeout",
        "500",
        "--grpc-keepalive-permit-without-calls",
        "--grpc-http2-max-pings-without-data=0",
        "--grpc-http2-min-recv-ping-interval-without-data=1000",
        "--grpc-max-connection-idle-ms=60000",
    )
    assert _keepalive(result) == Keepalive(10_000, 500, True, 0, 1000, 0, 60_000)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"grpc_keepalive_time": 0}, "--grpc-keepalive-time must be at least 1"),
        ({"grpc_keepalive_timeout": -1}, "--grpc-keepalive-timeout must be at least 1"),
        ({"grpc_http2_max_ping_strikes": -1}, "--grpc-http2-max-ping-strikes must not be"),
        ({"grpc_max_connection_idle_ms": -5}, "--grpc-max-connection-idle-ms must not be"),
    ],
)
def test_bad_values_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ServerSettings(**changes)


def test_the_aio_transport_gets_the_same_settings_as_channel_arguments():
    options = dict(Keepalive(1000, 500, True, 0, 2000, 3, 4000).channel_options())
    assert options == {
        "grpc.keepalive_time_ms": 1000,
        "grpc.keepalive_timeout_ms": 500,
        "grpc.keepalive_permit_without_calls": 1,
        "grpc.http2.max_pings_without_data": 0,
        "grpc.http2.min_ping_interval_without_data_ms": 2000,
        "grpc.http2.max_ping_strikes": 3,
        "grpc.max_connection_idle_ms": 4000,
    }
    assert "grpc.max_connection_idle_ms" not in dict(Keepalive().channel_options())
