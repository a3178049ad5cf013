"""TLS to PostgreSQL (``ssl: {sslmode, ca, cert, key}``) against a private server with a
certificate made for the test: encrypted when asked, verified when asked, never a
silent plaintext fallback, and a TLS failure reported at once (not retried)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from async_db_client import DBClientFactory
from async_db_client.backends.sql import SQLRemoteStore
from async_db_client.errors import DBConnectionError
from tests.support.postgres import PG
from tests.support.postgres_server import PrivatePostgres

pytestmark = [pytest.mark.live]


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[PrivatePostgres, str]]:
    server = PrivatePostgres()
    # In the server's own folder: the test's temporary folders are root's alone.
    cert, key = os.path.join(server.dir, "server.crt"), os.path.join(server.dir, "server.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", key, "-out", cert, "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    server.own(cert, 0o644)
    server.own(key)
    server.settings.update({"ssl": "on", "ssl_cert_file": cert, "ssl_key_file": key})
    server.start()
    try:
        yield server, cert
    finally:
        server.stop()


def config(port: int, ssl: dict[str, Any] | None, **pool: Any) -> dict[str, Any]:
    tier: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "database": "postgres",
        "user": "postgres",
        "pool": {"min_size": 0, "connect_timeout": 10, "connect_retry_budget": 5, **pool},
    }
    if ssl is not None:
        tier["ssl"] = ssl
    return {"database": {"remote_type": "postgresql", "remote_config": tier}}


async def encrypted(port: int, ssl: dict[str, Any] | None) -> bool:
    async with DBClientFactory(config(port, ssl)).create_client() as db:
        store = db.remote_db.store
        assert isinstance(store, SQLRemoteStore)
        row = await store.executor.fetchone(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        assert row is not None
        return bool(row[0])


@pytest.mark.asyncio
async def test_sslmodes_against_a_tls_server(tls_server: tuple[PrivatePostgres, str]) -> None:
    server, cert = tls_server
    assert await encrypted(server.port, {"sslmode": "require"})
    assert await encrypted(server.port, {"sslmode": "verify-ca", "ca": cert})
    assert await encrypted(server.port, {"sslmode": "verify-full", "ca": cert})
    assert await encrypted(server.port, None)  # libpq's default, prefer: TLS if offered
    assert not await encrypted(server.port, {"sslmode": "disable"})


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "ssl",
    [
        pytest.param({"sslmode": "verify-full"}, id="unknown-ca"),
        pytest.param({"sslmode": "verify-ca"}, id="unknown-ca-no-hostname-check"),
    ],
)
async def test_an_unverifiable_certificate_fails_at_once(
    tls_server: tuple[PrivatePostgres, str], ssl: dict[str, Any]
) -> None:
    server, _ = tls_server
    began = time.monotonic()
    settings = config(server.port, ssl, connect_retry_budget=30)
    async with DBClientFactory(settings).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
    assert "TLS failed" in str(info.value) and "certificate verify failed" in str(info.value)
    assert time.monotonic() - began < 30  # not retried for the budget


@pytest.mark.asyncio
async def test_required_tls_from_a_server_without_it_is_refused(own_postgres_database: str) -> None:
    """The shared test server runs without TLS: ``require`` must not fall back."""
    tier = config(PG["port"], {"sslmode": "require"}, connect_retry_budget=30)
    tier["database"]["remote_config"]["database"] = own_postgres_database
    began = time.monotonic()
    async with DBClientFactory(tier).create_client() as db:
        with pytest.raises(DBConnectionError) as info:
            await db.get_hash_record("/a")
    assert "TLS failed: the server does not offer TLS" in str(info.value)
    assert time.monotonic() - began < 30
