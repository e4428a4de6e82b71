"""Slow or idle clients cannot hold connections: header and body time, connection cap.

Raw sockets against a live server built as ``magneto serve`` builds it. Times are checked
against generous bounds (the machine is shared): each timer must fire after its bound and well
before the client would give up.
"""

from __future__ import annotations

import json
import re
import select
import socket
import time

import httpx
import pytest

from magneto.infer.predictor import Predictor
from magneto.service.batching import MAX_RETRY_AFTER_S
from magneto.service.settings import ServiceSettings
from tests.service.live_server import serving, tiny_checkpoint

pytestmark = pytest.mark.slow  # starts servers, subprocesses or training runs

HEADER_S = 1.0
BODY_S = 1.0
GRACE_S = 1.0  # service.slow_clients.BODY_GRACE_S
SLACK_S = 3.0


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor(tiny_checkpoint(), device="cpu")


@pytest.fixture(scope="module")
def server(predictor):
    settings = ServiceSettings(
        header_timeout_s=HEADER_S, body_timeout_s=BODY_S, log_level="warning"
    )
    with serving(settings, predictor) as (url, _):
        yield url


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends until it closes; fails if it is still open after
    ``limit_s``."""
    sock.settimeout(limit_s)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for more than {limit_s} s")
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length from a kept-alive connection."""
    sock.settimeout(30)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def rejected(url: str, reason: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    match = re.search(rf'^magneto_rejected_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_partial_headers_are_cut_off_after_the_header_timeout(server):
    started = time.monotonic()
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
        data = read_until_closed(sock, HEADER_S + SLACK_S)
    elapsed = time.monotonic() - started
    assert data == b""  # closed, nothing answered
    assert HEADER_S * 0.9 <= elapsed <= HEADER_S + SLACK_S
    assert rejected(server, "header_timeout") >= 1


def test_a_connection_that_sends_nothing_is_closed_too(server):
    started = time.monotonic()
    with socket.create_connection(address(server)) as sock:
        assert read_until_closed(sock, HEADER_S + SLACK_S) == b""
    assert time.monotonic() - started >= HEADER_S * 0.9


def test_headers_trickled_a_byte_at_a_time_are_cut_off_too(server):
    """Each byte arrives in time; the whole header section does not."""
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    started = time.monotonic()
    closed = False
    with socket.create_connection(address(server)) as sock:
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable and sock.recv(1024) == b"":
                closed = True
                break
            if time.monotonic() - started > HEADER_S + SLACK_S:
                break
    assert closed, "the trickling client was not cut off"
    assert time.monotonic() - started <= HEADER_S + SLACK_S


def test_an_idle_kept_alive_connection_outlasts_the_header_timer_and_client_idle_limits(server):
    """Idle past the header bound and past httpx's own idle limit (5 s): a client that reuses
    the connection just before it would drop it must not meet a server closing it at the same
    moment (uvicorn's default of 5 s made exactly that race: a reset mid-request)."""
    client_idle_limit = httpx.Limits(max_connections=1).keepalive_expiry
    assert client_idle_limit is not None
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        time.sleep(max(HEADER_S, client_idle_limit) + 0.5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200


def test_the_keep_alive_outlasts_the_longest_retry_after():
    """A client told to come back in Retry-After seconds finds its connection still open."""
    assert ServiceSettings().keep_alive_s > MAX_RETRY_AFTER_S + SLACK_S


def test_an_idle_connection_is_closed_after_keep_alive_s(predictor):
    settings = ServiceSettings(keep_alive_s=1, log_level="warning")
    with serving(settings, predictor) as (url, _), socket.create_connection(address(url)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock)[0] == 200
        started = time.monotonic()
        assert read_until_closed(sock, 1 + SLACK_S) == b""
    assert time.monotonic() - started >= 0.9


def test_a_stalled_body_gets_408_and_the_connection_is_closed(server):
    started = time.monotonic()
    with socket.create_connection(address(server)) as sock:
        sock.sendall(
            b"POST /v1/summarize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"tags": '
        )
        data = read_until_closed(sock, BODY_S + SLACK_S)
    elapsed = time.monotonic() - started
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert BODY_S * 0.9 <= elapsed <= BODY_S + SLACK_S
    assert rejected(server, "body_timeout") >= 1


def test_a_body_the_app_never_reads_cannot_hold_the_connection(server):
    """A 405 is answered without reading the body; a client trickling that body (which keeps
    uvicorn's keep-alive timer from ever firing) is still closed after the body bound."""
    started = time.monotonic()
    closed = False
    with socket.create_connection(address(server)) as sock:
        sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nx")
        answered = b""
        while time.monotonic() - started < BODY_S + GRACE_S + SLACK_S:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    closed = True
                    break
                answered += chunk
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
    assert answered.startswith(b"HTTP/1.1 405")
    assert closed, "the trickled body held the connection open"
    assert time.monotonic() - started >= BODY_S


def test_connections_over_the_cap_get_a_json_503_and_are_closed(predictor):
    settings = ServiceSettings(max_connections=3, header_timeout_s=30, log_level="warning")
    with serving(settings, predictor) as (url, _):
        time.sleep(0.3)  # let the readiness probe's connection go
        held = [socket.create_connection(address(url)) for _ in range(3)]
        try:
            for sock in held:  # each one is served (and stays open: keep-alive)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(sock)[0] == 200
            with socket.create_connection(address(url)) as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                data = read_until_closed(extra, SLACK_S)
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503"), data[:200]
            assert re.search(rb"\r\nretry-after: \d+", head.lower())
            assert json.loads(body)["error"]["code"] == "too_many_connections"
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.3)
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200  # room again
        assert rejected(url, "connections") == 1
