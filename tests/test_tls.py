"""tls: the config's TLS files, their clear errors, the handshake, and a TLS stream that one
thread reads while others write, as os-ken's receive loop, its send thread and the route sender
do. Real TLS over loopback TCP, with certificates from a throwaway CA (lab.make_pki)."""

from __future__ import annotations

import logging
import random
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest

from taprouter import config
from taprouter.controller.session import connection, tls
from taprouter.lab import make_pki, sh

from test_connection import os_ken_conf  # noqa: F401  (a fixture)

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory):
    """A second CA's switch certificate: valid, but not signed by the lab's CA."""
    return make_pki(tmp_path_factory.mktemp("rogue"))


def files(pki) -> config.TlsConfig:
    return config.TlsConfig(pki.controller_key, pki.controller_cert, pki.ca)


def switch_context(pki, ca=None) -> ssl.SSLContext:
    """What Open vSwitch does as the client: its own certificate, and the controller's checked."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_cert_chain(str(pki.switch_cert), str(pki.switch_key))
    ctx.load_verify_locations(cafile=str((ca or pki).ca))
    return ctx


def tcp_pair() -> tuple[socket.socket, socket.socket, tuple]:
    """(the switch's TCP socket, ours, the switch's address), connected over loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    switch = socket.create_connection(listener.getsockname())
    ours, address = listener.accept()
    listener.close()
    return switch, ours, address


def connect(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext):
    """(our TlsStream or None, the switch's SSLSocket or the exception its handshake raised)."""
    raw, ours, address = tcp_pair()
    switch: list = []

    def handshake():
        try:
            switch.append(client_ctx.wrap_socket(raw))
        except (OSError, ValueError) as exc:
            switch.append(exc)
            raw.close()

    thread = threading.Thread(target=handshake)
    thread.start()
    stream = tls.accept(server_ctx, ours, address)
    thread.join(10)
    return stream, switch[0]


# -- config and context --------------------------------------------------------------------------

def test_config_reads_tls_files_beside_the_config_file(pki):
    base = pki.ca.parent
    data = {"openflow": {"listen": "127.0.0.1:6653",
                         "tls": {"key": pki.controller_key.name, "cert": pki.controller_cert.name}},
            "routers": {"r1": {"dpid": 1, "ports": {1: {"tap": "r1-p1"}}}}}
    loaded = config.parse(data, base / "taprouter.yaml")
    assert loaded.tls == config.TlsConfig(pki.controller_key, pki.controller_cert, None)
    assert config.parse({k: v for k, v in data.items() if k != "openflow"}, base / "t.yaml").tls is None


@pytest.mark.parametrize("tls_data, expected", [
    ({"key": "k.pem"}, ["openflow.tls.key: /nowhere/k.pem does not exist",
                        "openflow.tls.cert: is required: the PEM file of the controller's certificate"]),
    ("on", ["openflow.tls: must be a mapping with 'key', 'cert' and optionally 'ca'"]),
    ({"key": "/k", "cert": "/c", "cafile": "x"}, ["openflow.tls.cafile: unknown key (allowed: ca, cert, key)",
                                                  "openflow.tls.key: /k does not exist",
                                                  "openflow.tls.cert: /c does not exist"]),
])
def test_config_names_each_tls_problem(tls_data, expected):
    data = {"openflow": {"tls": tls_data}, "routers": {"r1": {"dpid": 1, "ports": {1: {"tap": "r1-p1"}}}}}
    with pytest.raises(config.ConfigError) as caught:
        config.parse(data, Path("/nowhere/t.yaml"))
    assert caught.value.problems == [f"/nowhere/t.yaml: {line}" for line in expected]


def test_context_says_which_file_is_wrong(pki, rogue, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    good = files(pki)
    with pytest.raises(tls.TlsError, match=f"{rogue.controller_key} is not the private key of "
                                           f"{pki.controller_cert}"):
        tls.context(config.TlsConfig(rogue.controller_key, pki.controller_cert, None))
    with pytest.raises(tls.TlsError, match=f"^{junk} holds no PEM certificate$"):
        tls.context(config.TlsConfig(pki.controller_key, junk, None))
    with pytest.raises(tls.TlsError, match=f"^{junk} holds no PEM CA certificate$"):
        tls.context(config.TlsConfig(good.key, good.cert, junk))
    assert tls.context(good).verify_mode == ssl.CERT_REQUIRED
    assert tls.context(config.TlsConfig(good.key, good.cert, None)).verify_mode == ssl.CERT_NONE


def test_check_reports_a_key_that_is_not_the_certificates(pki, rogue, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(f"openflow: {{tls: {{key: {rogue.controller_key}, cert: {pki.controller_cert}}}}}\n"
                    "routers: {r1: {dpid: 1, ports: {1: {tap: r1-p1}}}}\n")
    taprouter = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "taprouter")
    with pytest.raises(RuntimeError, match="openflow.tls.key: .* is not the private key of"):
        sh(taprouter, "check", "-c", str(path))


# -- the handshake -------------------------------------------------------------------------------

def test_a_switch_without_a_certificate_from_the_ca_is_refused(pki, rogue, caplog):
    caplog.set_level(logging.WARNING, logger="taprouter.controller.session.tls")
    stream, switch = connect(tls.context(files(pki)), switch_context(rogue, ca=pki))
    assert stream is None
    if not isinstance(switch, OSError):  # TLS 1.3: the switch learns it at its first read
        with pytest.raises(ssl.SSLError, match="alert"):
            switch.recv(1)
    assert "TLS handshake failed" in caplog.text and "127.0.0.1:" in caplog.text


def test_a_switch_speaking_plain_openflow_is_refused(pki, caplog):
    caplog.set_level(logging.WARNING, logger="taprouter.controller.session.tls")
    switch, ours, address = tcp_pair()
    switch.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # an OpenFlow hello
    assert tls.accept(tls.context(files(pki)), ours, address) is None
    assert "TLS handshake failed" in caplog.text
    switch.close()


# -- the stream ----------------------------------------------------------------------------------

@pytest.fixture
def stream(pki):
    ours, switch = connect(tls.context(files(pki)), switch_context(pki))
    assert ours is not None, switch
    ours.settimeout(5)
    yield ours, switch
    ours.close()
    switch.close()


def test_one_thread_reads_while_two_write(stream):
    """Two writers send framed messages of random sizes while a reader takes a stream the other
    way: every message arrives whole and in its writer's order, and every byte read is right."""
    ours, switch = stream
    rng = random.Random(5)
    sizes = [[rng.randrange(8, 40000) for _ in range(300)] for _ in range(2)]
    incoming = bytes(rng.getrandbits(8) for _ in range(1 << 16)) * 64  # 4 MB
    got: list[bytes] = []
    errors: list[BaseException] = []

    def write(writer: int):
        for seq, size in enumerate(sizes[writer]):
            body = bytes([writer * 16 + seq % 16]) * size
            ours.sendall(struct.pack("!BHI", writer, seq, size) + body)

    def read():
        total = 0
        try:
            while total < len(incoming):
                data = ours.recv(65536)
                assert data, "the stream ended early"
                got.append(data)
                total += len(data)
        except BaseException as exc:  # reported below
            errors.append(exc)

    def switch_side():
        switch.sendall(incoming)

    threads = [threading.Thread(target=write, args=(w,)) for w in (0, 1)]
    threads += [threading.Thread(target=read), threading.Thread(target=switch_side)]
    for thread in threads:
        thread.start()
    # The switch reads what the writers sent, meanwhile.
    expected = sum(7 + s for writer in sizes for s in writer)
    buffer = bytearray()
    while len(buffer) < expected:
        data = switch.recv(65536)
        assert data
        buffer += data
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert b"".join(got) == incoming
    next_seq = [0, 0]
    pos = 0
    while pos < len(buffer):
        writer, seq, size = struct.unpack_from("!BHI", buffer, pos)
        assert seq == next_seq[writer] and size == sizes[writer][seq]
        assert buffer[pos + 7:pos + 7 + size] == bytes([writer * 16 + seq % 16]) * size
        next_seq[writer] += 1
        pos += 7 + size
    assert next_seq == [300, 300]


def test_records_already_here_are_read_in_one_call(stream):
    """Open vSwitch sends each PacketIn as a TLS record of its own: one recv takes every whole
    record the socket holds, as a recv over TCP takes every queued message."""
    ours, switch = stream
    messages = [bytes([n]) * 100 for n in range(100)]
    for message in messages:
        switch.sendall(message)  # a record each
    time.sleep(0.3)
    got = ours.recv(65536)
    assert len(got) > 100, "one record a call"
    while len(got) < 10000:
        got += ours.recv(65536)
    assert got == b"".join(messages)


def test_an_idle_stream_times_out_like_a_socket(stream):
    ours, _switch = stream
    ours.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(socket.timeout):
        ours.recv(100)
    assert 0.15 < time.monotonic() - started < 3


@pytest.mark.parametrize("how", ["close_notify", "tcp_close", "garbage"])
def test_the_end_of_the_stream_is_empty_or_a_connection_error_never_an_ssl_error(stream, how):
    """os-ken's receive loop retries an ssl.SSLError forever; it must see b"" or a plain OSError."""
    ours, switch = stream
    switch.sendall(b"last words")
    if how == "close_notify":
        switch.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):
            switch.unwrap()  # sends its close_notify, then would wait for ours
        switch.close()
    elif how == "garbage":
        socket.socket.sendall(switch, b"\x17\x03\x03\x00\x20" + bytes(32))  # a record that fails its MAC
    else:
        socket.socket.shutdown(switch, socket.SHUT_RDWR)
        switch.close()
    assert ours.recv(100) == b"last words"
    try:
        assert ours.recv(100) == b""
    except ssl.SSLError:
        pytest.fail("an ssl.SSLError reached the reader")
    except ConnectionError:
        pass


def test_shutting_down_keeps_the_session_for_reading(stream):
    """os-ken closes a datapath by shutting its socket's write side and reading to the end.
    SSLSocket.shutdown would drop the TLS session: recv would then return raw ciphertext."""
    ours, switch = stream
    ours.shutdown(socket.SHUT_WR)
    switch.sendall(b"after shutdown")
    assert ours.recv(100) == b"after shutdown"


@pytest.mark.parametrize("how", ["closed", "reset"])
def test_os_kens_datapath_serves_a_switch_over_tls(pki, stream, os_ken_conf, how):
    """os-ken's own Datapath on a TLS stream says hello, and ends at once when the switch closes
    the connection or resets it (as over TCP, test_connection)."""
    from os_ken.controller import controller
    from os_ken.controller.handler import DEAD_DISPATCHER

    ours, switch = stream
    dp = controller.Datapath(connection.LockedSocket(ours, aligned=True), ("127.0.0.1", 1))
    serving = threading.Thread(target=dp.serve, daemon=True)
    serving.start()
    connection.install(dp)
    hello = switch.recv(8)
    assert len(hello) == 8 and hello[1] == 0  # OFPT_HELLO, over TLS
    if how == "reset":
        switch.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    switch.close()
    serving.join(3)
    assert not serving.is_alive(), "the datapath did not end when the switch went"
    assert dp.state == DEAD_DISPATCHER


def test_the_factory_wrap_at_birth_installs_refuses_a_switch_the_ca_did_not_sign(pki, rogue, caplog, monkeypatch):
    """Its handshake fails: logged, and no Datapath is made (the factory returns at once)."""
    from os_ken.controller import controller

    monkeypatch.setattr(controller, "datapath_connection_factory", controller.datapath_connection_factory)
    caplog.set_level(logging.WARNING, logger="taprouter.controller.session.tls")
    connection.wrap_at_birth(tls.context(files(pki)))
    try:
        raw, ours, address = tcp_pair()
        serving = threading.Thread(target=controller.datapath_connection_factory, args=(ours, address),
                                   daemon=True)
        serving.start()
        try:
            switch_context(rogue, ca=pki).wrap_socket(raw).recv(8)
        except ssl.SSLError:
            pass
        serving.join(5)
        assert not serving.is_alive()
        assert "TLS handshake failed (TLSV1_ALERT_UNKNOWN_CA" in caplog.text or \
            "TLS handshake failed (CERTIFICATE_VERIFY_FAILED" in caplog.text, caplog.text
        raw.close()
    finally:
        monkeypatch.undo()


def test_a_switch_speaking_tls_to_a_daemon_without_tls_is_refused_with_a_reason(pki, caplog, monkeypatch):
    from os_ken.controller import controller

    monkeypatch.setattr(controller, "datapath_connection_factory", controller.datapath_connection_factory)
    caplog.set_level(logging.WARNING, logger="taprouter.controller.session.connection")
    connection.wrap_at_birth()
    try:
        raw, ours, address = tcp_pair()
        serving = threading.Thread(target=controller.datapath_connection_factory, args=(ours, address),
                                   daemon=True)
        serving.start()
        with pytest.raises(OSError):
            switch_context(pki).wrap_socket(raw)  # its handshake meets a closed connection
        serving.join(5)
        assert not serving.is_alive()
        assert "it speaks TLS, but openflow.tls is not configured" in caplog.text
        raw.close()
    finally:
        monkeypatch.undo()


def test_a_switch_speaking_openflow_is_not_taken_for_tls():
    switch, ours, _address = tcp_pair()
    switch.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # an OpenFlow 1.3 hello
    assert not tls.speaks_tls(ours)
    assert ours.recv(8) == struct.pack("!BBHI", 4, 0, 8, 1)  # peeked, not taken
    switch.close()
    ours.close()
