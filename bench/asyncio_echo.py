"""The asyncio and uvloop echo peers, one per process:

    python bench/asyncio_echo.py --api protocol|streams --loop asyncio|uvloop --port P

Each is the idiomatic way to write an echo server with that API, no tuning beyond it, so
the ratios compare netsprint with what a Python programmer would write anyway.
Prints its listening address; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal


class EchoProtocol(asyncio.Protocol):
    """Owns nothing but its transport: every chunk received is written straight back."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the client went away mid-write; the connection is over either way
    finally:
        writer.close()


async def serve(api: str, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if api == "protocol":
        server = await loop.create_server(EchoProtocol, host, port, backlog=1024)
    else:
        server = await asyncio.start_server(echo_stream, host, port, backlog=1024)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    print(f"{api} echo on {host}:{port}", flush=True)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=["protocol", "streams"], default="protocol")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop  # only the uvloop peer needs it

        uvloop.run(serve(args.api, args.host, args.port))
    else:
        asyncio.run(serve(args.api, args.host, args.port))


if __name__ == "__main__":
    main()
