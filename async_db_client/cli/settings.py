"""Where the command-line tool's configuration comes from.

The first of these that is present is used, whole (sources are not merged, so what a
command talks to never depends on a leftover variable):

1. ``--config FILE``: a TOML file with the library's dict shape::

       [database]
       remote_type = "mysql"
       [database.remote_config]
       host = "db.example.com"
       database = "hash_db"
       user = "scanner"
       password = "..."

2. ``ASYNC_DB_CLIENT_CONFIG``: the path of such a file, from the environment.
3. The embedded default: remote and core tiers in one SQLite file,
   ``$ASYNC_DB_CLIENT_DATA_DIR/hashes.db``, else ``$XDG_DATA_HOME/async_db_client/hashes.db``,
   else ``~/.local/share/async_db_client/hashes.db`` (the directory is created).

In a file, a relative SQLite ``path`` is relative to the file's directory. The scan
cache of ``scan`` lives in the same data directory whatever the database is (it is
local to the machine that scans): ``<data dir>/scan-cache.db``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SQLITE_MEMORY, TIERS, ClientConfig, parse_config
from ..errors import ConfigurationError

__all__ = [
    "ENV_CONFIG",
    "ENV_DATA_DIR",
    "Settings",
    "data_dir",
    "default_config",
    "load_settings",
]

ENV_CONFIG = "ASYNC_DB_CLIENT_CONFIG"
ENV_DATA_DIR = "ASYNC_DB_CLIENT_DATA_DIR"
DB_FILE = "hashes.db"
CACHE_FILE = "scan-cache.db"


@dataclass(frozen=True)
class Settings:
    """The validated configuration, where it came from, and the data directory."""

    config: ClientConfig
    source: str
    data_dir: Path

    @property
    def scan_cache(self) -> Path:
        return self.data_dir / CACHE_FILE


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The per-user data directory (not created here)."""
    env = os.environ if env is None else env
    if env.get(ENV_DATA_DIR):
        return Path(env[ENV_DATA_DIR]).expanduser().absolute()
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative value is invalid and must be ignored.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "async_db_client"


def default_config(directory: Path) -> dict[str, Any]:
    """Remote and core tiers in one SQLite file under ``directory``."""
    path = str(directory / DB_FILE)
    return {
        "database": {
            "remote_type": "sqlite",
            "remote_config": {"path": path},
            "core_type": "sqlite",
            "core_config": {"path": path},
        }
    }


def load_settings(config_file: str | None, env: Mapping[str, str] | None = None) -> Settings:
    """The configuration by the precedence above; ``ConfigurationError`` if unusable."""
    env = os.environ if env is None else env
    directory = data_dir(env)
    if config_file:
        return Settings(_from_file(Path(config_file)), f"--config {config_file}", directory)
    if env.get(ENV_CONFIG):
        path = env[ENV_CONFIG]
        return Settings(_from_file(Path(path)), f"${ENV_CONFIG}={path}", directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the data directory {directory}: {exc.strerror or exc} "
            f"(set {ENV_DATA_DIR} or use --config)"
        ) from None
    config = parse_config(default_config(directory))
    return Settings(config, f"embedded default ({directory / DB_FILE})", directory)


def _from_file(path: Path) -> ClientConfig:
    path = path.expanduser()
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
    if not isinstance(raw.get("database"), dict):
        raise ConfigurationError(f"config file {path} has no [database] table", key="database")
    return parse_config(_sqlite_paths_relative_to(raw, path.absolute().parent))


def _sqlite_paths_relative_to(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    database = dict(raw["database"])
    for tier in TIERS:
        tier_config = database.get(f"{tier}_config")
        if database.get(f"{tier}_type") != "sqlite" or not isinstance(tier_config, dict):
            continue
        path = tier_config.get("path")
        if isinstance(path, str) and path != SQLITE_MEMORY:
            resolved = Path(path).expanduser()
            database[f"{tier}_config"] = {**tier_config, "path": str(base / resolved)}
    return {**raw, "database": database}
