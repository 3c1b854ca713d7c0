"""moto's server with keep-alive connections: its WSGI app on werkzeug's threaded server, answered as HTTP/1.1.

moto's own ``ThreadedMotoServer`` runs werkzeug's development server, which
closes every connection after one response (``Connection: close``), then
waits 10 ms on the socket to discard what the client might still send: every
request from a Lambda worker or the CLI paid a new TCP connection and a new
server thread (three per rank). AWS's endpoints keep connections alive; so
does this server. The request handler is werkzeug's (moto's subclass: the
same environ), its WSGI call our own: the body is read whole before the app
runs (so nothing unread can be taken for the next request line), the
response is sent with its length (chunked when the app gives none), and the
connection stays open until the client closes it, says ``Connection:
close``, or is idle for ``IDLE_S`` (closed quietly: a client reconnects). A thread serves each open connection
(unbounded, as werkzeug's: a Lambda Invoke may block on a worker whose own
S3 calls need a thread of their own). ``stop()`` closes the open ones.
"""

from __future__ import annotations

import io
import logging
import socket
import threading
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, make_server

logger = logging.getLogger(__name__)
IDLE_S = 120.0  # an idle keep-alive connection is closed after this (a client reconnects transparently)
_NO_BODY = {204, 304}


def _handler_class() -> type:
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):  # type: ignore[misc, valid-type]
        """One connection: requests served one after another until it closes."""

        protocol_version = "HTTP/1.1"
        timeout = IDLE_S

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.server.lock:
                self.server.open_connections.add(self.connection)

        def finish(self) -> None:
            with self.server.lock:
                self.server.open_connections.discard(self.connection)
            super().finish()

        def log_error(self, format: str, *args: Any) -> None:
            if format.startswith("Request timed out"):  # http.server's words for a socket silent for IDLE_S: closed, as meant
                logger.debug("closed a connection silent for %.0f s (idle, or a client stalled mid-request)", self.timeout)
                return
            super().log_error(format, *args)

        def run_wsgi(self) -> None:
            if self.headers.get("Expect", "").lower().strip() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            environ = self.make_environ()
            if environ.get("wsgi.input_terminated"):  # chunked: werkzeug's reader stops at the last chunk
                body = environ["wsgi.input"].read()
            else:
                body = self.rfile.read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            environ["wsgi.input_terminated"] = True
            environ["CONTENT_LENGTH"] = str(len(body))
            started: list[Any] = []
            chunks: list[bytes] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                started[:] = [status, headers]
                return chunks.append
            try:
                result = self.server.app(environ, start_response)
                try:
                    chunks.extend(result)
                finally:
                    if hasattr(result, "close"):
                        result.close()
            except Exception:  # the app failed: a 500, as werkzeug answers (the connection is closed)
                logger.exception("error on request %s %s", self.command, self.path)
                started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
                chunks[:] = [b"Internal Server Error"]
                self.close_connection = True
            self._respond(started[0], started[1], b"".join(chunks))

        def _respond(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
            """Status line, headers and body in one write (two small writes on a kept-alive connection wait on
            Nagle's algorithm and the client's delayed ACK: 40 ms a request)."""
            code = int(status.split(" ", 1)[0])
            self.log_request(code, len(body))
            lines = [f"{self.protocol_version} {status}"]
            names = set()
            for name, value in headers:
                if name.lower() not in ("connection", "transfer-encoding"):
                    names.add(name.lower())
                    lines.append(f"{name}: {value}")
            bodyless = self.command == "HEAD" or code in _NO_BODY or 100 <= code < 200
            if "content-length" not in names and not bodyless:
                lines.append(f"Content-Length: {len(body)}")
            if "server" not in names:
                lines.append(f"Server: {self.version_string()}")
            if "date" not in names:
                lines.append(f"Date: {self.date_time_string()}")
            if self.close_connection or self.headers.get("Connection", "").lower() == "close":
                self.close_connection = True
                lines.append("Connection: close")
            head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            self.wfile.write(head + (b"" if bodyless else body))

    return KeepAliveHandler


class KeepAliveMotoServer:
    """moto's WSGI app served with keep-alive connections on ``host:port`` (see the module)."""

    def __init__(self, host: str, port: int, app: Any = None) -> None:
        self.host, self.port, self.app = host, port, app  # app: moto's (default), or any WSGI app
        self._server: ThreadedWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        app = self.app or DomainDispatcherApplication(create_backend_app)
        self._server = make_server(self.host, self.port, app, threaded=True, request_handler=_handler_class())
        self._server.lock = threading.Lock()  # type: ignore[attr-defined]
        self._server.open_connections = set()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="moto-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close every open connection (their threads end), release the port."""
        if self._server is None:
            return
        self._server.shutdown()
        with self._server.lock:  # type: ignore[attr-defined]
            connections = list(self._server.open_connections)  # type: ignore[attr-defined]
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = None
