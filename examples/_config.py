"""Where the examples point: their own seed-style config, unless told otherwise.

Set ``ASYNC_DB_CLIENT_EXAMPLE_CONFIG`` to a JSON file holding a ``{'database': ...}``
config to run an example against other backends; ``local`` (in memory) is the default,
so every example runs anywhere.
"""

from __future__ import annotations

import json
import os
from typing import Any

IN_MEMORY: dict[str, Any] = {
    "database": {"remote_type": "local", "core_type": "local", "pipeline_type": "local"}
}


def example_config(seed_config: dict[str, Any]) -> dict[str, Any]:
    """The config from ``ASYNC_DB_CLIENT_EXAMPLE_CONFIG``, else the in-memory one.

    ``seed_config`` is the predecessor's example config, kept in each example to show
    the keys; it points at servers that do not exist here.
    """
    path = os.environ.get("ASYNC_DB_CLIENT_EXAMPLE_CONFIG")
    if path:
        with open(path, encoding="utf-8") as handle:
            loaded: dict[str, Any] = json.load(handle)
        return loaded
    return IN_MEMORY
