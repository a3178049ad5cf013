"""TLS to MariaDB, live: certificates made with ``openssl`` for this run, a private
``mariadbd`` that requires secure transport, and the library's ``ssl`` settings.

* a client that verifies the server (CA and host name) connects and works, over TLS;
* a client trusting another CA is refused at once (a certificate error is not retried);
* a host name the certificate does not name is refused with ``verify_identity`` and
  accepted without it (the CA is still checked);
* a plaintext client is refused by the server;
* a client configured for TLS never falls back to plaintext when the server offers none.

Each on both MySQL drivers (aiomysql, asyncmy).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from async_db_client import DBClientFactory, DBConnectionError, DBInstance
from async_db_client.backends.sql import SQLRemoteStore
from tests.support.live import MYSQL, MYSQL_DRIVERS, require_driver, unavailable
from tests.support.mariadb_server import PrivateMariaDB

pytestmark = pytest.mark.live

OPENSSL = shutil.which("openssl")
#: Far longer than any refusal takes on a loaded machine: a client that retried a refusal
#: (or waited for a deadline) would still be at it at half of this.
ACQUIRE_TIMEOUT = 60
AT_ONCE = ACQUIRE_TIMEOUT / 2


@dataclass(frozen=True)
class Certificates:
    ca: Path  # signed the server's certificates
    other_ca: Path  # unrelated: trusts nothing this server has
    server_cert: Path  # CN localhost, SAN DNS:localhost, IP:127.0.0.1
    server_key: Path
    elsewhere_cert: Path  # same CA, but for db.elsewhere.invalid only
    elsewhere_key: Path


def openssl(*args: str) -> None:
    assert OPENSSL is not None
    result = subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}-key.pem", directory / f"{name}.pem"
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-sha256",
        "-subj", f"/CN=async_db_client test {name}", "-keyout", str(key), "-out", str(cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return key, cert


def make_server_cert(
    directory: Path, name: str, ca: tuple[Path, Path], common_name: str, san: str
) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}-{part}.pem" for part in ("key", "csr", "cert"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={common_name}",
        "-keyout", str(key), "-out", str(csr),
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[1]), "-CAkey", str(ca[0]),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(extensions),
        "-out", str(cert),
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def certificates() -> Iterator[Certificates]:
    if OPENSSL is None:
        unavailable("openssl is not installed")
    # Not under pytest's tmp_path: its parents are private to root, and mariadbd runs as
    # the mysql user.
    directory = Path(tempfile.mkdtemp(prefix="adc-tls-"))
    try:
        yield _make_certificates(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _make_certificates(directory: Path) -> Certificates:
    ca = make_ca(directory, "ca")
    other = make_ca(directory, "other-ca")
    server = make_server_cert(directory, "server", ca, "localhost", "DNS:localhost,IP:127.0.0.1")
    elsewhere = make_server_cert(
        directory, "elsewhere", ca, "db.elsewhere.invalid", "DNS:db.elsewhere.invalid"
    )
    directory.chmod(0o755)  # mariadbd runs as mysql
    for path in directory.iterdir():
        shutil.chown(path, "mysql")
        path.chmod(0o600 if path.name.endswith("key.pem") else 0o644)
    return Certificates(ca[1], other[1], *server, *elsewhere)


class TLSMariaDB(PrivateMariaDB):
    """A private server requiring TLS; its admin connections verify it too."""

    def __init__(self, certs: Certificates) -> None:
        # Copies the server reads (so a test may swap them and FLUSH SSL).
        self.certs = certs
        self.live_cert = certs.server_cert.with_name("live-cert.pem")
        self.live_key = certs.server_key.with_name("live-key.pem")
        self.use(certs.server_cert, certs.server_key)
        super().__init__(
            [
                f"--ssl-ca={certs.ca}",
                f"--ssl-cert={self.live_cert}",
                f"--ssl-key={self.live_key}",
                "--require-secure-transport=ON",
            ]
        )

    def use(self, cert: Path, key: Path) -> None:
        for source, target in ((cert, self.live_cert), (key, self.live_key)):
            shutil.copyfile(source, target)
            shutil.chown(target, "mysql")
            target.chmod(0o600)

    def connect(self, **kw: object) -> pymysql.connections.Connection:
        # The CA is checked; the name is not (a test swaps in a certificate for another).
        return super().connect(ssl={"ca": str(self.certs.ca), "check_hostname": False}, **kw)


@pytest.fixture(params=MYSQL_DRIVERS)
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_driver(name)
    return name


@pytest.fixture(scope="module")
def server(certificates: Certificates) -> Iterator[TLSMariaDB]:
    tls = TLSMariaDB(certificates)
    try:
        tls.start()
        tls.execute("CREATE DATABASE hashdb CHARACTER SET utf8mb4")
        yield tls
    finally:
        tls.close()


def config(port: int, host: str = "127.0.0.1", **tier: Any) -> dict[str, Any]:
    remote = {
        "host": host,
        "port": port,
        "database": "hashdb",
        "user": "root",
        "password": "",
        "pool": {
            "min_size": 0,
            "max_size": 2,
            "acquire_timeout": ACQUIRE_TIMEOUT,
            "connect_timeout": 5,
        },
        **tier,
    }
    return {"database": {"remote_type": "mysql", "remote_config": remote}}


@contextlib.asynccontextmanager
async def client(port: int, **kw: Any) -> AsyncIterator[DBInstance]:
    async with DBClientFactory(config(port, **kw)).create_client() as db:
        yield db


async def session_tls(db: DBInstance) -> tuple[str, str]:
    assert isinstance(db.remote_db.store, SQLRemoteStore)
    rows = await db.remote_db.store.executor.fetchall(
        "SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')"
    )
    status = dict(rows)
    return str(status["Ssl_version"]), str(status["Ssl_cipher"])


async def refused(port: int, **kw: Any) -> tuple[DBConnectionError, float, int]:
    """The error of a first call, how long it took, and how many connection attempts."""
    async with client(port, **kw) as db:
        start = time.monotonic()
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
        elapsed = time.monotonic() - start
        attempts = sum(s.connection_errors for s in db.pool_stats().values())
    return info.value, elapsed, attempts


@pytest.mark.asyncio
async def test_a_verifying_client_connects_over_tls(
    server: TLSMariaDB, certificates: Certificates, driver: str
) -> None:
    for host in ("127.0.0.1", "localhost"):  # both named by the certificate
        ca = str(certificates.ca)
        async with client(server.port, host=host, ssl={"ca": ca}, driver=driver) as db:
            assert await db.insert_or_update_hash({"path": f"/tls/{host}", "current_hash": "h"})
            record = await db.get_hash_record(f"/tls/{host}")
            assert record is not None and record.current_hash == "h"
            version, cipher = await session_tls(db)
            assert version.startswith("TLSv1.") and cipher
            assert await db.health_check() == {"local_db": True}


@pytest.mark.asyncio
async def test_a_client_trusting_another_ca_is_refused_at_once(
    server: TLSMariaDB, certificates: Certificates, driver: str
) -> None:
    other = {"ca": str(certificates.other_ca)}
    error, elapsed, attempts = await refused(server.port, ssl=other, driver=driver)
    assert "certificate verify failed" in str(error) or "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert attempts == 1  # not retried: another attempt meets the same certificate
    assert elapsed < AT_ONCE  # no wait for the deadline either


@pytest.mark.asyncio
async def test_a_host_name_the_certificate_does_not_name(
    server: TLSMariaDB, certificates: Certificates, driver: str
) -> None:
    server.use(certificates.elsewhere_cert, certificates.elsewhere_key)
    server.execute("FLUSH SSL")
    try:
        ca = str(certificates.ca)
        error, elapsed, attempts = await refused(server.port, ssl={"ca": ca}, driver=driver)
        assert "hostname mismatch" in str(error) or "match" in str(error), error
        assert attempts == 1 and elapsed < AT_ONCE
        # Without verify_identity the CA is still checked, the name is not.
        relaxed = {"ca": ca, "verify_identity": False}
        async with client(server.port, ssl=relaxed, driver=driver) as db:
            assert await db.get_hash_record("/nothing") is None
            assert (await session_tls(db))[0].startswith("TLSv1.")
        error, _, _ = await refused(
            server.port,
            ssl={"ca": str(certificates.other_ca), "verify_identity": False},
            driver=driver,
        )
        assert "certificate verify failed" in str(error)
    finally:
        server.use(certificates.server_cert, certificates.server_key)
        server.execute("FLUSH SSL")


@pytest.mark.asyncio
async def test_a_plaintext_client_is_refused_by_the_server(
    server: TLSMariaDB, certificates: Certificates, driver: str
) -> None:
    """MariaDB answers a plaintext login with "access denied" (1045), although the same
    user and password log in over TLS."""
    error, elapsed, attempts = await refused(server.port, driver=driver)
    assert "(1045) Access denied for user 'root'" in str(error), error
    assert attempts == 1 and elapsed < AT_ONCE
    with pytest.raises(pymysql.err.OperationalError) as raw:
        pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="")
    assert raw.value.args[0] == 1045
    async with client(server.port, ssl={"ca": str(certificates.ca)}, driver=driver) as db:
        assert await db.health_check() == {"local_db": True}


@pytest.mark.asyncio
async def test_a_tls_client_never_falls_back_to_plaintext(
    certificates: Certificates, mysql_database: str, driver: str
) -> None:
    """The shared test server offers no TLS at all: a client configured with ``ssl`` must
    refuse it before logging in, rather than talk in plaintext (aiomysql alone would) or
    fail in a way that reads like a network fault (asyncmy alone would)."""
    with pymysql.connect(**MYSQL) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT @@have_ssl")
        if cursor.fetchone()[0] == "YES":
            pytest.skip("the shared server offers TLS; there is no plaintext to fall back to")
    remote = {
        **{k: MYSQL[k] for k in ("host", "port", "user", "password")},
        "database": mysql_database,
        "ssl": {"ca": str(certificates.ca)},
        "driver": driver,
        "pool": {"min_size": 0, "acquire_timeout": ACQUIRE_TIMEOUT},
    }
    config = {"database": {"remote_type": "mysql", "remote_config": remote}}
    async with DBClientFactory(config).create_client() as db:
        start = time.monotonic()
        with pytest.raises(DBConnectionError, match="does not offer TLS"):
            await db.get_hash_record("/a")
        assert time.monotonic() - start < AT_ONCE  # refused, not retried until the deadline
        assert sum(s.connections_opened for s in db.pool_stats().values()) == 0
