"""Which repository class serves which tier on which engine."""

from __future__ import annotations

from ..clock import Clock
from ..config import LocalConfig, MSSQLConfig, MySQLConfig
from ..interfaces import Repository
from ..pool_manager import PoolManager

__all__ = ["build_tier"]


def build_tier(
    tier: str,
    config: MySQLConfig | MSSQLConfig | LocalConfig | None,
    pools: PoolManager,
    clock: Clock | None,
) -> Repository | None:
    """The repository for ``tier`` as configured, or None if the tier is not configured.

    Drivers are imported here, lazily, so a missing optional driver only matters to the
    tiers that use it (and then raises ``DriverNotInstalledError`` naming the extra).
    """
    if config is None:
        return None
    if isinstance(config, LocalConfig):
        return _memory(tier, clock)
    raise NotImplementedError(f"{config.type} backend for the {tier} tier")


def _memory(tier: str, clock: Clock | None) -> Repository:
    if tier == "remote":
        from .memory_remote import MemoryRemoteRepository

        return MemoryRemoteRepository(clock=clock)
    if tier == "core":
        from .memory_core import MemoryCoreRepository

        return MemoryCoreRepository(clock=clock)
    from .memory_pipeline import MemoryPipelineRepository

    return MemoryPipelineRepository(clock=clock)
