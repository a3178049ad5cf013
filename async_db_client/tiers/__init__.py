"""The three tiers' contracts (repositories) and the store protocols backends implement.

* :mod:`.base`: what every tier shares (store protocol, failure logging, transactions,
  health, the bulk-validation helper).
* :mod:`.remote`: hash records and logs of one site.
* :mod:`.core`: the central dashboard, sites, baselines, central logs.
* :mod:`.pipeline`: update requests, official sites, completions.
"""

from .base import Repository, Store, Tier
from .core import CoreRepository, CoreStore
from .pipeline import PipelineRepository, PipelineStore
from .remote import RemoteRepository, RemoteStore, SingleValue

__all__ = [
    "CoreRepository",
    "CoreStore",
    "PipelineRepository",
    "PipelineStore",
    "RemoteRepository",
    "RemoteStore",
    "Repository",
    "SingleValue",
    "Store",
    "Tier",
]
