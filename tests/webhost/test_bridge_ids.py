"""webhost.bridge: which v2 id each v1 request goes out under, against a cable that records them.

The cable here is a stand-in that answers as the appliance would and notes
each id: what is tested is the bridge's mapping, which the system tests
(tests/system/comm/test_bridge.py) show end to end through the real daemons.
"""

from __future__ import annotations

from comm_handler.v2messages import Kind, V2Answer, decode_request
from spool import codes
from spool.header import Action, RequestHeader, System
from webhost.bridge import REMEMBERED, Bridge, Cable
from webhost.client import nul_timestamp

SIGN = RequestHeader(action=Action.SIGN, system=System.X509, profile=5, md=8, days=365)
PAYLOADS = (b"csr", b"DNS:a.example", b"/CN=a.example")


class RecordingCable(Cable):
    def __init__(self) -> None:
        super().__init__("loop://", 115200, None)  # type: ignore[arg-type]
        self.ids: list[bytes] = []
        self.answer_code = codes.OK

    def exchange(self, request_id: bytes, body: bytes) -> V2Answer:
        request = decode_request(body)
        self.ids.append(request_id)
        if request.kind is Kind.NUL:
            return V2Answer(Kind.NUL)
        if self.answer_code != codes.OK:
            return V2Answer(request.kind, self.answer_code, b"", "not now")
        return V2Answer(request.kind, codes.OK, b"-----BEGIN CERTIFICATE-----")


def test_unacked_answers_keep_the_id_and_acked_ones_release_it() -> None:
    cable = RecordingCable()
    bridge = Bridge(cable)
    first = bridge.submit(SIGN, PAYLOADS, 0.0)
    bridge.submit(SIGN, PAYLOADS, 0.0)  # the client did not ACK the first answer
    assert cable.ids[0] == cable.ids[1]
    assert first.delivers is not None
    bridge.delivered(first.delivers)  # now it did
    bridge.submit(SIGN, PAYLOADS, 0.0)
    assert cable.ids[2] != cable.ids[1]


def test_a_transient_refusal_keeps_the_id_even_when_acknowledged() -> None:
    cable = RecordingCable()
    bridge = Bridge(cable)
    cable.answer_code = codes.number_of("timeout")
    refused = bridge.submit(SIGN, PAYLOADS, 0.0)
    assert refused.payload2.startswith(b"ERR timeout: ") and refused.delivers is None
    cable.answer_code = codes.OK
    bridge.submit(SIGN, PAYLOADS, 0.0)
    assert cable.ids[0] == cable.ids[1]


def test_keep_alives_cannot_push_an_open_request_out() -> None:
    cable = RecordingCable()
    bridge = Bridge(cable)
    cable.answer_code = codes.number_of("timeout")
    bridge.submit(SIGN, PAYLOADS, 0.0)
    nul = RequestHeader(action=Action.NUL, system=System.NONE)
    for second in range(REMEMBERED * 2):
        bridge.submit(nul, (nul_timestamp() + str(second).encode(), b"", b""), 0.0)
    cable.answer_code = codes.OK
    bridge.submit(SIGN, PAYLOADS, 0.0)
    assert cable.ids[-1] == cable.ids[0]
    assert len(set(cable.ids[1:-1])) == REMEMBERED * 2  # each keep-alive its own id


def test_a_keep_alive_for_another_system_is_answered_as_v1_does() -> None:
    cable = RecordingCable()
    outcome = Bridge(cable).submit(
        RequestHeader(action=Action.NUL, system=System.X509), (b"", b"", b""), 0.0
    )
    assert (outcome.payload1, outcome.payload2) == (b"", b"") and cable.ids == []
