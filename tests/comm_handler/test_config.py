"""signer-comm in-process: its [comm] configuration, opening bad devices, and
``LinkServer.answer`` on hostile messages (hypothesis), on a real spool."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comm_handler.config import CommConfig, load_comm_config
from comm_handler.daemon import LinkServer
from comm_handler.frames import MAX_STRING, decode_message
from comm_handler.transfer import DEPLOYED_PACING, Pacing
from signer_core.config import load_config
from spool.header import Action
from spool.queue import Spool
from spool.settings import ConfigError, LinkTimeouts
from tests.support.comm import link_server
from tests.support.examples import examples

BASE = '[spool]\ndir = "spool"\n[comm]\ndevice = "/dev/ttyUSB0"\n'
ALL_LINK_KEYS = """ready_timeout = 2.5
verdict_timeout = 1
chunk_timeout = 0.5
max_resends = 3
max_naks = 0
max_message = 100000
pace = true
pace_slice_bytes = 16
pace_per_byte = 0.0001
pace_per_slice = 0.005
"""


def load(tmp_path: Path, extra: str = "", base: str = BASE) -> CommConfig:
    path = tmp_path / "signer.toml"
    path.write_text(base + extra)
    return load_comm_config(path)


def test_defaults_are_the_deployed_values(tmp_path) -> None:
    cfg = load(tmp_path)
    assert cfg.link == LinkTimeouts(
        ready=20.0, verdict=5.0, chunk=5.0, max_resends=5, max_naks=5, max_message=MAX_STRING
    )
    assert cfg.pacing is None
    assert cfg.result_deadline == 100.0
    assert cfg.spool_dir == (tmp_path / "spool").resolve()


def test_every_link_key(tmp_path) -> None:
    cfg = load(tmp_path, ALL_LINK_KEYS)
    assert cfg.link == LinkTimeouts(
        ready=2.5, verdict=1.0, chunk=0.5, max_resends=3, max_naks=0, max_message=100000
    )
    assert cfg.pacing == Pacing(slice_bytes=16, per_byte=0.0001, per_slice=0.005)


def test_pace_alone_gives_the_deployed_pacing(tmp_path) -> None:
    assert load(tmp_path, "pace = true\n").pacing == DEPLOYED_PACING


def test_signer_config_accepts_the_comm_link_keys(tmp_path) -> None:
    """Both daemons read the same file: the signer must not refuse comm-only keys."""
    signer = (
        '[signer]\nuser = "s"\ngroup = "s"\ndatabase = "ca.sqlite"\nstate_dir = "lib"\n'
        '[x509]\nocsp_url = "http://ocsp.example.org/"\ncps_url = "http://example.org/cps"\n'
        'policy_oid = "1.2.3.4"\n'
    )
    path = tmp_path / "signer.toml"
    path.write_text(BASE + ALL_LINK_KEYS + signer)
    assert load_config(path).comm.device == "/dev/ttyUSB0"


@pytest.mark.parametrize(
    "extra, key",
    [
        ("ready_timeout = 0\n", "comm.ready_timeout"),
        ("verdict_timeout = -1\n", "comm.verdict_timeout"),
        ('chunk_timeout = "5"\n', "comm.chunk_timeout"),
        ("chunk_timeout = true\n", "comm.chunk_timeout"),
        ("max_resends = 1.5\n", "comm.max_resends"),
        ("max_resends = 99\n", "comm.max_resends"),
        ("max_naks = -1\n", "comm.max_naks"),
        ("max_message = 10\n", "comm.max_message"),
        ("max_message = 16777216\n", "comm.max_message"),
        ("pace = 1\n", "comm.pace"),
        ("pace = true\npace_slice_bytes = 0\n", "comm.pace_slice_bytes"),
        ("pace = true\npace_per_byte = 1.0\n", "comm.pace_per_byte"),
        ("result_deadline = 118\n", "comm.result_deadline"),
        ("chunk_timout = 1.0\n", "comm.chunk_timout"),
    ],
)
def test_bad_values_name_their_key(tmp_path, extra, key) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load(tmp_path, extra)


def test_missing_device_is_the_packaged_one(tmp_path) -> None:
    """As the signer has always read it (one reader now); an empty one is named."""
    assert load(tmp_path, base='[spool]\ndir = "spool"\n[comm]\n').device == "/dev/ttyUSB0"
    with pytest.raises(ConfigError, match=r"comm\.device"):
        load(tmp_path, 'device = ""\n', base='[spool]\ndir = "spool"\n[comm]\n')


# -- opening devices that are not there or not serial ports ------------------


def closed_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    "device",
    [
        "{tmp}/absent",
        "{tmp}",
        "{tmp}/regular-file",
        "/dev/null",
        "nosuch://x",
        "socket://127.0.0.1:{port}",
    ],
)
def test_open_failures_are_reported_not_raised(tmp_path, device, caplog) -> None:
    (tmp_path / "regular-file").write_bytes(b"")
    device = device.format(tmp=tmp_path, port=closed_tcp_port())
    cfg = CommConfig(
        spool_dir=tmp_path,
        device=device,
        baud=115200,
        user="",
        group="",
        result_deadline=1.0,
        forbidden=(),
    )
    assert LinkServer(cfg, Spool(tmp_path))._open() is None
    assert f"cannot open {device}" in caplog.text


# -- answer(): every message gets a v1 response, never an exception ---------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> LinkServer:
    # No signer runs: a deadline of zero answers each signing request at once.
    return link_server(tmp_path_factory.mktemp("spool"), 0.0)


def l3(data: bytes) -> bytes:
    return len(data).to_bytes(3, "big") + data


headers = st.one_of(
    st.binary(max_size=12),
    st.tuples(
        st.just(1),
        st.integers(0, 3),
        st.integers(0, 3),
        st.binary(min_size=5, max_size=5),
        st.integers(0, 2),
    ).map(lambda t: bytes([t[0], t[1], t[2]]) + t[3] + bytes([t[4]])),
)
messages = st.one_of(
    st.binary(max_size=64),
    st.tuples(headers, st.lists(st.binary(max_size=32), min_size=0, max_size=5)).map(
        lambda t: l3(l3(t[0]) + b"".join(l3(p) for p in t[1]))
    ),
)


@settings(max_examples=examples(300), deadline=None)
@given(messages)
def test_answer_is_always_a_v1_response(server, data) -> None:
    response = decode_message(server.v1.answer(data).message)
    assert len(response.header) == 4 and response.header[0] == 1
    assert response.header[1] in tuple(Action) and response.header[2:] == b"\0\0"
    assert response.payloads[0] == response.payloads[2] == b""
    reason = response.payloads[1]
    if reason:
        assert reason.startswith((b"ERR bad-message: ", b"ERR timeout: "))
    else:  # only a keep-alive (version 1, action 0) is answered without a reason
        assert response.header[1] == Action.NUL and data[6:8] == bytes([1, Action.NUL])


def test_answer_queues_well_formed_requests(server) -> None:
    before = server.relay.spool.counts()["incoming"]
    nul = l3(l3(bytes([1, 0, 0, 0, 0, 0, 0, 0, 0])) + l3(b"0101000026.00") + l3(b"") * 2)
    sign = l3(l3(bytes([1, 1, 1, 0, 5, 8, 1, 109, 0])) + l3(b"csr") + l3(b"") * 2)
    assert decode_message(server.v1.answer(nul).message).payloads[1] == b""
    timed_out = decode_message(server.v1.answer(sign).message)
    assert timed_out.header == bytes([1, 1, 0, 0])
    assert timed_out.payloads[1].startswith(b"ERR timeout: no result within 0 s")
    assert server.relay.spool.counts()["incoming"] == before + 2
