"""``scan --metrics-port``: the client's Prometheus metrics over HTTP while it works."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

__all__ = ["serving_metrics"]


@contextlib.contextmanager
def serving_metrics(client: Any, port: int | None, address: str) -> Iterator[None]:
    """Serve ``client``'s :class:`~async_db_client.telemetry.PrometheusCollector` on
    ``http://address:port/metrics`` for the block (nothing if ``port`` is None)."""
    if port is None:
        yield
        return
    try:
        from prometheus_client import CollectorRegistry, start_http_server

        from ..telemetry.prometheus import PrometheusCollector
    except ImportError:
        raise click.UsageError(
            "--metrics-port needs prometheus-client: pip install 'async_db_client[prometheus]'"
        ) from None
    registry = CollectorRegistry()
    collector = PrometheusCollector(client)
    registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=address, registry=registry)
    except OSError as exc:
        collector.close()
        raise click.UsageError(f"--metrics-port {port}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        collector.close()
