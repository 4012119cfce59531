"""Week 1: an epoll reactor, from the system call up to a multi-reactor echo server.

    poller.py       epoll / poll / select behind register, modify, unregister, poll
    timers.py       a heap of deadlines (pure: no clock reads)
    loop.py         EventLoop: poll, dispatch fd callbacks, run timers and call_soon work
    protocols.py    the callback grammar (connection_made, data_received, ...)
    tcp.py          TcpListener, TcpConnection (non-blocking, watermarks, LT/ET, EMFILE)
    udp.py          UdpSocket
    multireactor.py main reactor accepts, sub-reactor threads serve (one loop per thread)
    echo.py         EchoProtocol and the `netsprint echo-server` entry point
    addresses.py    host/port to a socket address (getaddrinfo), addresses for logs
    background.py   serving_in_thread: a server on its own loop in a background thread
    signals.py      StopOnSignals: SIGINT/SIGTERM stop a loop cleanly (the CLI's servers)
    pollcost.py     the cost of one poll against the number of watched fds (the plot)
"""

from netsprint.reactor.loop import EventLoop, Handle, LoopTimeout
from netsprint.reactor.multireactor import MultiReactorServer, SubReactor
from netsprint.reactor.poller import (EDGE, ERROR, HANGUP, PEER_CLOSED, READABLE, WRITABLE,
                                      EpollPoller, Poller, PollPoller, SelectPoller,
                                      event_names, make_poller)
from netsprint.reactor.protocols import DatagramProtocol, Protocol
from netsprint.reactor.tcp import TcpConnection, TcpListener
from netsprint.reactor.timers import Timer, TimerQueue
from netsprint.reactor.udp import UdpSocket

__all__ = [
    "READABLE", "WRITABLE", "ERROR", "HANGUP", "PEER_CLOSED", "EDGE", "event_names",
    "Poller", "EpollPoller", "PollPoller", "SelectPoller", "make_poller",
    "Timer", "TimerQueue", "EventLoop", "Handle", "LoopTimeout",
    "Protocol", "DatagramProtocol", "TcpConnection", "TcpListener", "UdpSocket",
    "MultiReactorServer", "SubReactor",
]
