"""Messages that name the one thing that is wrong: a directory where a file belongs, and the one TLS
file (key, cert or ca) that cannot be used, with why."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from taprouter import cli, config
from taprouter.config import ConfigError
from taprouter.controller.session import tls
from taprouter.lab import make_pki

from test_config import good, set_router


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def bird_problem(tmp_path, value) -> str:
    data = good()
    set_router("bird", {"config": value})(data)
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    [problem] = info.value.problems
    assert len(problem) < len(str(tmp_path)) + 200, problem
    return problem.removeprefix(f"{tmp_path / 'c.yaml'}: routers.r1.bird.config: ")


def test_a_bird_config_that_is_a_directory_says_so(tmp_path):
    assert bird_problem(tmp_path, str(tmp_path)) == f"{tmp_path} is a directory, not a file"


@pytest.mark.parametrize("value,problem", [
    ("x" * 5000, "cannot be used: File name too long"),
    ("a\x00b", "cannot be used: embedded null byte"),
    ("/dev/null", "/dev/null is not a regular file"),
    (True, "must be the path of a BIRD 2 config file (text), not a boolean"),
    (5, "must be the path of a BIRD 2 config file (text), not 5"),
    ([], "must be the path of a BIRD 2 config file (text), not a list"),
    ("", "is required: the path of a BIRD 2 config file"),
], ids=["too-long", "nul", "device", "boolean", "number", "list", "empty"])
def test_a_bird_config_that_cannot_be_a_file_says_why(tmp_path, value, problem):
    assert bird_problem(tmp_path, value).endswith(problem)


def test_a_tls_file_that_is_a_directory_says_so(tmp_path, pki):
    data = good()
    data["openflow"]["tls"] = {"key": str(tmp_path), "cert": str(pki.controller_cert)}
    with pytest.raises(ConfigError) as info:
        config.parse(data, tmp_path / "c.yaml")
    assert info.value.problems == [f"{tmp_path / 'c.yaml'}: openflow.tls.key: {tmp_path} is a directory, "
                                   "not a file"]


def check(tmp_path, capsys, key: Path, cert: Path, ca: Path | None = None) -> list[str]:
    path = tmp_path / "t.yaml"
    ca_text = f", ca: {ca}" if ca else ""
    path.write_text(f"openflow: {{tls: {{key: {key}, cert: {cert}{ca_text}}}}}\n"
                    "routers: {r1: {dpid: 1, ports: {1: {tap: r1-p1}}}}\n")
    assert cli.main(["check", "-c", str(path)]) == 2
    return [line.split(": ", 2)[2] for line in capsys.readouterr().err.splitlines()]


def test_check_names_the_certificate_alone_when_it_is_not_one(tmp_path, capsys, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert check(tmp_path, capsys, pki.controller_key, junk) == [f"openflow.tls.cert: {junk} holds no PEM "
                                                                 "certificate"]


def test_check_names_the_key_alone_when_it_is_not_one(tmp_path, capsys, pki):
    assert check(tmp_path, capsys, pki.ca, pki.controller_cert) == [f"openflow.tls.key: {pki.ca} holds no PEM "
                                                                    "private key"]


def test_check_names_a_key_that_is_not_the_certificates(tmp_path, capsys, pki):
    assert check(tmp_path, capsys, pki.switch_key, pki.controller_cert) == [
        f"openflow.tls.key: {pki.switch_key} is not the private key of {pki.controller_cert}"]


def test_check_names_a_broken_certificate_and_says_why(tmp_path, capsys, pki):
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    [problem] = check(tmp_path, capsys, pki.controller_key, pki.controller_cert, broken)
    assert problem.startswith(f"openflow.tls.ca: {broken} holds a PEM CA certificate that OpenSSL cannot "
                              "read ("), problem


def test_check_refuses_an_encrypted_key_without_asking_for_its_passphrase(tmp_path, capsys, pki):
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n")
    assert check(tmp_path, capsys, encrypted, pki.controller_cert) == [
        f"openflow.tls.key: {encrypted} is an encrypted private key; taprouter needs it unencrypted"]


@contextlib.contextmanager
def unprivileged():
    """Root reads any file whatever its mode: act as nobody for a moment (effective ids only)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_check_names_the_key_it_cannot_read(pki, capsys):
    # A directory nobody may enter, holding a readable certificate and an unreadable key.
    base = Path(tempfile.mkdtemp(prefix="tdnkey"))
    try:
        base.chmod(0o755)
        key, cert = base / "key.pem", base / "cert.pem"
        shutil.copy(pki.controller_key, key)
        shutil.copy(pki.controller_cert, cert)
        key.chmod(0o600)
        cert.chmod(0o644)
        (base / "t.yaml").write_text(f"openflow: {{tls: {{key: {key}, cert: {cert}}}}}\n"
                                     "routers: {r1: {dpid: 1, ports: {1: {tap: r1-p1}}}}\n")
        (base / "t.yaml").chmod(0o644)
        if os.geteuid() != 0:
            key.chmod(0)
        with unprivileged():
            status = cli.main(["check", "-c", str(base / "t.yaml")])
        assert status == 2
        assert capsys.readouterr().err == (f"error: {base / 't.yaml'}: openflow.tls.key: cannot read {key}: "
                                           "Permission denied\n")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_context_error_names_its_key(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("x\n")
    for files, which in ((config.TlsConfig(junk, pki.controller_cert, None), "key"),
                         (config.TlsConfig(pki.controller_key, junk, None), "cert"),
                         (config.TlsConfig(pki.controller_key, pki.controller_cert, junk), "ca")):
        with pytest.raises(tls.TlsError) as info:
            tls.context(files)
        assert info.value.which == which and str(junk) in str(info.value)

