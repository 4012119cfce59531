"""The blocking Binding client's reading loop (no sockets: a fake that never runs dry)."""

from __future__ import annotations

import pytest

from netsprint.stun import client
from netsprint.stun.message import binding_request, encode
from netsprint.stun.transaction import ClientTransaction

pytestmark = pytest.mark.unit

FLOOD_LIMIT = 10_000  # far above any sane batch: reaching it means the loop never yields


class EndlessJunk:
    """A socket under a datagram flood: recvfrom always has one more non-answer ready."""

    def __init__(self, datagram: bytes) -> None:
        self.datagram = datagram
        self.reads = 0

    def recvfrom(self, size: int) -> tuple[bytes, tuple[str, int]]:
        self.reads += 1
        assert self.reads < FLOOD_LIMIT, "the client never went back to check its deadline"
        return self.datagram, ("192.0.2.66", 3478)


@pytest.mark.parametrize("junk", [b"not stun", encode(binding_request())],
                         ids=["not-stun", "someone-elses-request"])
def test_a_flood_cannot_keep_the_client_past_its_deadline(junk):
    request = binding_request()
    txn = ClientTransaction(encode(request), request.transaction_id)
    txn.start(0.0)
    flood = EndlessJunk(junk)
    # One readiness event reads a bounded batch, then the caller re-checks the deadline.
    assert client._read_datagrams(flood, txn) is None
    assert flood.reads == client.RECV_BATCH
    assert txn.state == "waiting"
