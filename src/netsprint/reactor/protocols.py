"""The callback grammar between a transport and your code (asyncio's, on purpose).

A stream protocol sees: connection_made, then data_received* (and at most one
eof_received), then exactly one connection_lost. pause_writing/resume_writing come in
pairs while the transport's output buffer crosses its high/low watermarks. Subclass and
override what you need; the defaults do nothing.
"""

from __future__ import annotations

from typing import Any


class Protocol:
    """Stream callbacks; owns whatever state you add, never the connection's socket."""

    __slots__ = ()  # subclasses that declare __slots__ stay dict-free (memory per connection)

    def connection_made(self, conn: Any) -> None:
        """The connection is up; `conn` is the TcpConnection to write to."""

    def data_received(self, data: bytes) -> None:
        """Some bytes arrived. TCP is a byte stream: message boundaries are not kept."""

    def eof_received(self) -> bool | None:
        """The peer shut down its write half (FIN). Return True to keep writing (half-close);
        otherwise the connection closes once its output buffer drains."""
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        """Called once: exc is None after a clean close, the OSError after a failure, or
        what one of these callbacks raised (the transport aborts the connection then)."""

    def pause_writing(self) -> None:
        """The output buffer went above the high watermark: stop producing."""

    def resume_writing(self) -> None:
        """The output buffer drained to the low watermark: produce again."""


class DatagramProtocol:
    """Datagram callbacks; owns whatever state you add, never the socket."""

    __slots__ = ()

    def connection_made(self, transport: Any) -> None:
        """The socket is bound and registered; `transport` is the UdpSocket."""

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        """One whole datagram (UDP keeps boundaries) from `addr`."""

    def error_received(self, exc: OSError) -> None:
        """A send or receive failed, e.g. ECONNREFUSED after an ICMP port unreachable."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket was closed."""
