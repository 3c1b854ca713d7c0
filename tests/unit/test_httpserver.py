"""Unit tests of emulator.httpserver: keep-alive connections that never mistake a request's body for the next
request, with a small WSGI app in place of moto's (raw sockets and http.client; no timing)."""

from __future__ import annotations

import http.client
import json
import socket

import pytest

from emulator.embedded import free_port
from emulator.httpserver import KeepAliveMotoServer


def app(environ, start_response):
    """Echoes what it saw; reads the body only when asked to (``/read``); ``/stream`` answers without a length."""
    seen = {"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "peer": environ["REMOTE_PORT"]}
    if environ["PATH_INFO"] == "/read":
        seen["body"] = environ["wsgi.input"].read().decode()
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("the app failed")
    body = json.dumps(seen).encode()
    if environ["PATH_INFO"] == "/stream":
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body[:5], body[5:]]
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture()
def server():
    running = KeepAliveMotoServer("127.0.0.1", free_port(), app=app)
    running.start()
    yield running
    running.stop()


def test_requests_share_one_connection_even_when_the_app_leaves_a_body_unread(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    answers = []
    for path, body in (("/ignore", b"x" * 10_000), ("/read", b"kept"), ("/stream", None), ("/read", b"")):
        connection.request("POST", path, body=body)
        response = connection.getresponse()
        assert response.status == 200 and not response.will_close
        answers.append(json.loads(response.read()))
    assert [a["path"] for a in answers] == ["/ignore", "/read", "/stream", "/read"]
    assert answers[1]["body"] == "kept" and answers[3]["body"] == ""
    assert len({a["peer"] for a in answers}) == 1  # one TCP connection served all four


def test_a_chunked_body_and_a_100_continue_are_read_whole(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /read HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in received.split(b"HTTP/1.1 200")[1:]]
    assert bodies[0]["body"] == "abcde" and bodies[1]["path"] == "/next"


def test_head_keeps_the_length_and_sends_no_body_and_connection_close_is_honoured(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("HEAD", "/anything")
    response = connection.getresponse()
    assert response.getheader("Content-Length") and response.read() == b""
    connection.request("GET", "/last", headers={"Connection": "close"})
    response = connection.getresponse()
    assert response.will_close and json.loads(response.read())["path"] == "/last"


def test_an_app_failure_is_a_500_and_closes_the_connection(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/boom")
    response = connection.getresponse()
    assert response.status == 500 and response.will_close and response.read() == b"Internal Server Error"


def test_stop_closes_open_connections_and_frees_the_port(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/first")
    assert connection.getresponse().read()
    server.stop()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", "/after")
        connection.getresponse().read()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2)


def test_an_idle_connection_is_closed_quietly(monkeypatch, caplog):
    """A kept-alive connection idle for IDLE_S is closed by the server without an ERROR line (http.server calls it
    'Request timed out'; a long-lived emulator printed one per idle client)."""
    import logging

    from emulator import httpserver

    monkeypatch.setattr(httpserver, "IDLE_S", 0.2)
    running = KeepAliveMotoServer("127.0.0.1", free_port(), app=app)
    running.start()
    try:
        with caplog.at_level(logging.DEBUG), socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while not received.rstrip().endswith(b"}"):
                received += sock.recv(4096)
            assert received.startswith(b"HTTP/1.1 200")
            assert sock.recv(1) == b""  # then idle: the server closes it
    finally:
        running.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    assert any("idle" in r.getMessage() for r in caplog.records)
