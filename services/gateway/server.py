"""uvicorn serving one ASGI app on a socket bound here (so port 0 works and the port is known at once), in the
foreground (`run`: SIGTERM and SIGINT stop it gracefully) or on a thread of its own (`start` / `stop`).

Graceful means: no new connections, requests in hand are answered, then the app's lifespan ends (the gateway's
producer delivers what is on its way). uvicorn's access log is off: scrapes and health probes would drown the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Generator
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, leaving signals to HttpServer.run (uvicorn's own handling re-raises the signal after its
    graceful shutdown, so the process would end by the signal instead of exiting 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpServer:
    def __init__(self, app: ASGIApp, *, host: str, port: int, name: str = "http", graceful_s: float = 30.0) -> None:
        self.name = name
        self._config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="on", server_header=False,
            timeout_graceful_shutdown=int(graceful_s), timeout_keep_alive=30,
        )
        self._server = _Server(self._config)
        self._socket = bind(host, port)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def run(self) -> None:
        """Serve in this thread until SIGTERM or SIGINT, then shut down gracefully and return (exit status 0)."""

        async def serve() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._exit, sig)
            await self._server.serve(sockets=[self._socket])

        log.info("%s listening on %s", self.name, self.url)
        asyncio.run(serve())
        if not self._server.started:
            raise RuntimeError(f"{self.name} did not start on {self.url} (see the log above)")

    def _exit(self, sig: int) -> None:
        log.info("%s: %s, shutting down", self.name, signal.Signals(sig).name)
        self._server.should_exit = True

    def start(self, timeout_s: float = 30.0) -> HttpServer:
        """Serve on a thread; returns once the app has started (raises if it could not)."""
        self._thread = threading.Thread(target=self._serve, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not start on {self.url} within {timeout_s:.0f}s")
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError(f"{self.name} did not start on {self.url}: {self._failure!r}")
        log.info("%s listening on %s", self.name, self.url)
        return self

    def _serve(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as e:
            self._failure = e
            log.exception("%s stopped by an error", self.name)

    def stop(self, timeout_s: float = 60.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (not listening yet: asyncio listens when uvicorn serves it).

    Made with proto=IPPROTO_TCP on purpose: asyncio sets TCP_NODELAY only on connections of such a socket, and
    uvicorn's own bind_socket leaves proto 0, so every answer after the first on a keep-alive connection would
    wait ~40 ms for the client's delayed ACK (Nagle's algorithm: uvicorn writes headers and body separately)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock
