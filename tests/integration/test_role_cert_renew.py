"""The cert_renew role on localhost: a certificate two days from expiry is renewed by the
own CA, the https service using it is restarted under a private supervisord and serves the
new certificate (verified with cert_min_days); check mode and a second run change nothing."""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import socket
import ssl
import sys
import time
from pathlib import Path

import pytest
from support import REPO, run_playbook

from selfheal.supervisor import Program, Supervisor

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("supervisord") is None, reason="supervisord is not installed"),
]

PLAYBOOK = REPO / "tests/integration/playbooks/role_cert_renew.yml"
SERVER = """\
import functools, http.server, ssl, sys
port, cert, key, root = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _pki(tmp: Path) -> dict[str, Path]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("selfheal test CA"))
        .issuer_name(_name("selfheal test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=88))
        .not_valid_after(now + dt.timedelta(days=2))  # expires in two days
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        k: tmp / n
        for k, n in (
            ("ca", "ca.crt"),
            ("ca_key", "ca.key"),
            ("cert", "web.crt"),
            ("key", "web.key"),
        )
    }
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, paths["ca_key"])
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, paths["key"])
    return paths


def _served_not_after(port: int, ca: Path) -> dt.datetime:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der).not_valid_after_utc


@pytest.fixture
def web(tmp_path: Path):
    pki = _pki(tmp_path)
    port = _free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www/index.html").write_text("ok\n")
    (tmp_path / "server.py").write_text(SERVER)
    sup = Supervisor(tmp_path / "sv")
    command = f"{sys.executable} {tmp_path / 'server.py'} {port} {pki['cert']} {pki['key']} {tmp_path / 'www'}"
    sup.write_config([Program("web", command)])
    sup.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _served_not_after(port, pki["ca"])
            break
        except OSError:
            time.sleep(0.2)
    yield {"sup": sup, "port": port, **pki}
    sup.stop()


def _vars(web, **extra) -> dict:
    return {
        "cert_renew_path": str(web["cert"]),
        "cert_renew_privatekey_path": str(web["key"]),
        "cert_renew_ca_path": str(web["ca"]),
        "cert_renew_ca_privatekey_path": str(web["ca_key"]),
        "cert_renew_subject_alt_names": ["IP:127.0.0.1"],
        "cert_renew_common_name": "localhost",
        "cert_renew_min_days": 30,
        "cert_renew_service_name": "web",
        "cert_renew_service_manager": "supervisord",
        "cert_renew_service_supervisor_config": str(web["sup"].config),
        "cert_renew_check_url": f"https://127.0.0.1:{web['port']}/",
        **extra,
    }


def _recap(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("localhost"))


def test_renews_an_expiring_certificate_and_reloads_the_consumer(web) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    before = web["cert"].read_bytes()
    assert _served_not_after(web["port"], web["ca"]) < soon
    pid = web["sup"].program_pid("web")

    dry = run_playbook(PLAYBOOK, extra_vars=_vars(web), check=True)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "changed=0" not in _recap(dry.stdout)
    assert web["cert"].read_bytes() == before
    assert web["sup"].program_pid("web") == pid

    first = run_playbook(PLAYBOOK, extra_vars=_vars(web))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=0" not in _recap(first.stdout)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=80)
    assert _served_not_after(web["port"], web["ca"]) > later  # served, not just on disk
    assert list(web["cert"].parent.glob("web.crt.*~"))  # the old certificate is kept

    second = run_playbook(PLAYBOOK, extra_vars=_vars(web))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed=0" in _recap(second.stdout)


def test_refuses_a_host_without_the_compliance_tags(web) -> None:
    before = web["cert"].read_bytes()
    result = run_playbook(
        PLAYBOOK, extra_vars=_vars(web, cert_renew_required_tags={"env": "production"})
    )
    assert result.returncode != 0
    assert "not cleared for automated remediation" in result.stdout
    assert web["cert"].read_bytes() == before
