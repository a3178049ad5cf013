"""The SQL backends: one store per tier over any engine (a dialect plus an executor).

* :mod:`.base`: what every SQL store shares (transactions, migrations, log rows).
* :mod:`.remote`, :mod:`.core`, :mod:`.pipeline`: the tiers' primitives as statements.
"""

from .core import SQLCoreStore
from .pipeline import SQLPipelineStore
from .remote import SQLRemoteStore

__all__ = ["SQLCoreStore", "SQLPipelineStore", "SQLRemoteStore"]
