"""The in-memory backends (config type ``local``): one store per tier.

``RemoteRepository(MemoryRemoteStore())`` (or ``DBClientFactory`` with ``local`` tiers)
gives a tier that keeps every contract of the SQL backends, for tests of your own code.
"""

from .core import MemoryCoreStore
from .pipeline import MemoryPipelineStore
from .remote import MemoryRemoteStore

__all__ = ["MemoryCoreStore", "MemoryPipelineStore", "MemoryRemoteStore"]
