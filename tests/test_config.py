"""Configuration parsing: the seed's dict unchanged; errors name the key, never a secret."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest

from async_db_client import ConfigurationError, DBClientFactory
from async_db_client.config import MSSQLConfig, MySQLConfig, parse_config

SECRET = "s3cr3t-P@ss"

SEED = {
    "database": {
        "remote_type": "mysql",
        "remote_config": {
            "host": "localhost",
            "database": "remote_db",
            "user": "remote_user",
            "password": SECRET,
            "port": 3306,
        },
        "core_type": "mysql",
        "core_config": {
            "host": "core.example.com",
            "database": "core_db",
            "user": "core_user",
            "password": SECRET,
        },
        "pipeline_type": "mssql",
        "pipeline_config": {
            "server": "pipeline.example.com",
            "database": "pipeline_db",
            "username": "pipeline_user",
            "password": SECRET,
        },
    }
}


def test_seed_config_parses_unchanged() -> None:
    config = parse_config(SEED)
    remote = config.database.tier("remote")
    pipeline = config.database.tier("pipeline")
    assert isinstance(remote, MySQLConfig) and remote.port == 3306 and remote.host == "localhost"
    assert isinstance(pipeline, MSSQLConfig)
    assert pipeline.driver == "ODBC Driver 18 for SQL Server" and pipeline.encrypt is True
    assert remote.password.get_secret_value() == SECRET
    assert remote.describe() == "mysql://remote_user@localhost:3306/remote_db"


def test_password_never_shown() -> None:
    config = parse_config(SEED)
    for text in (repr(config), str(config), repr(config.database.tier("remote"))):
        assert SECRET not in text
    factory = DBClientFactory(SEED)
    assert SECRET not in repr(factory) and SECRET not in repr(factory.create_client())


def test_missing_tiers_and_unrelated_top_level_keys_are_fine() -> None:
    config = parse_config({"database": {"remote_type": "local"}, "scanner": {"threads": 4}})
    assert config.database.tier("core") is None
    assert config.database.tier("remote") is not None
    assert parse_config(None).database.tier("remote") is None


def _mutated(path: list[str], value: Any) -> dict[str, Any]:
    config = copy.deepcopy(SEED)
    node: Any = config
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (["database", "remote_type"], "postgres", "database.remote_type"),
        (["database", "core_type"], "mssql", "database.core_type"),
        (["database", "pipeline_type"], "mysql", "database.pipeline_type"),
        (["database", "remote_config", "host"], KeyError, "database.remote_config.host"),
        (["database", "remote_config", "database"], KeyError, "database.remote_config.database"),
        (["database", "remote_config", "port"], "3306x", "database.remote_config.port"),
        (["database", "remote_config", "port"], 70000, "database.remote_config.port"),
        (["database", "remote_config", "password"], 12345, "database.remote_config.password"),
        (["database", "remote_config", "usr"], "typo", "database.remote_config.usr"),
        (["database", "remote_config", "pool"], {"min_size": -1}, "database.remote_config.pool"),
        (["database", "pipeline_config", "username"], KeyError, "database.pipeline_config"),
        (["database", "remote_config"], "not a dict", "database.remote_config"),
        (["database", "remote_config"], KeyError, "database.remote_config"),
        (["database", "remote_type"], KeyError, "database.remote_type"),
        (["database", "remote_tpye"], "mysql", "database.remote_tpye"),
        (["database"], [], "database"),
    ],
)
def test_bad_config_names_the_key(path: list[str], value: Any, key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(_mutated(path, value))
    assert info.value.key is not None and info.value.key.startswith(key)
    assert key in str(info.value)
    assert SECRET not in str(info.value) and "12345" not in str(info.value)
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_pool_min_above_max_is_named() -> None:
    with pytest.raises(ConfigurationError, match=r"pool.*min_size \(5\) exceeds max_size \(2\)"):
        parse_config(
            _mutated(["database", "remote_config", "pool"], {"min_size": 5, "max_size": 2})
        )


def test_mssql_accepts_a_full_odbc_string_as_a_secret() -> None:
    odbc = f"DRIVER={{X}};SERVER=s;UID=u;PWD={SECRET}"
    config = parse_config(
        {"database": {"pipeline_type": "mssql", "pipeline_config": {"odbc_connect": odbc}}}
    )
    assert SECRET not in repr(config)


def test_factory_raises_configuration_error_and_logs_nothing_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(ValueError):
        DBClientFactory(_mutated(["database", "remote_config", "port"], "bad"))
    assert SECRET not in caplog.text


def test_non_mapping_config() -> None:
    with pytest.raises(ConfigurationError, match="must be a mapping"):
        parse_config("database=mysql")  # type: ignore[arg-type]


def test_importing_the_package_needs_no_optional_driver() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['aioodbc'] = None; sys.modules['pyodbc'] = None;"
        " sys.modules['aiosqlite'] = None; import async_db_client, async_db_client.sync;"
        " print(async_db_client.__version__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == async_db_client_version()


def async_db_client_version() -> str:
    import async_db_client

    return async_db_client.__version__


@pytest.mark.parametrize(
    ("config", "hint"),
    [({}, ""), ({"databse": {"remote_type": "local"}}, "did you mean 'database' for 'databse'"),
     ({"scanner": {}}, "")],
)  # fmt: skip
def test_a_configuration_without_its_database_section_is_refused(
    config: dict[str, object], hint: str
) -> None:
    with pytest.raises(ConfigurationError, match="no 'database' section") as info:
        parse_config(config)
    assert info.value.key == "database" and hint in str(info.value)
    assert parse_config({"database": {}}).database.tier("remote") is None  # no tiers: fine


def test_the_readme_toml_example_is_a_valid_configuration() -> None:
    import re
    import tomllib
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert block is not None
    text = "\n".join(line.removeprefix("   ") for line in block.group(1).splitlines())
    config = parse_config(tomllib.loads(text))
    assert config.database.tier("remote") is not None and config.database.tier("core")


# --------------------------------------------------------------- several servers


def _hosts_config(**keys: Any) -> dict[str, Any]:
    config = copy.deepcopy(SEED)
    remote = config["database"]["remote_config"]
    del remote["host"]
    remote.update(keys)
    return config


@pytest.mark.parametrize(
    ("keys", "key", "says"),
    [
        ({"hosts": ["a", "b"], "host": "c"}, "database.remote_config.hosts", "not both"),
        ({"hosts": []}, "database.remote_config.hosts", "empty"),
        ({"hosts": ["a:99999"]}, "database.remote_config.hosts.0", "bad port"),
        ({"hosts": ["a", "b:x1"]}, "database.remote_config.hosts.1", "bad port"),
        ({"hosts": ["a", "a:3306"]}, "database.remote_config.hosts.1", "same server as hosts.0"),
        ({"hosts": ["[::1"]}, "database.remote_config.hosts.0", "not host"),
        ({"hosts": [":3306"]}, "database.remote_config.hosts.0", "no valid host"),
        ({"hosts": ["a"], "ha_mode": "multi"}, "database.remote_config.ha_mode", ""),
        ({"hosts": ["a"], "read_consistency": "strong"}, "database.remote_config.read", ""),
        ({"hosts": ["a"], "max_replication_lag": 0}, "database.remote_config.max_repl", ""),
        ({"hosts": ["a"], "driver": "odbc"}, "database.remote_config.hosts", "aiomysql"),
        ({}, "database.remote_config.host", "required"),
    ],
)
def test_bad_hosts_config_names_the_key(keys: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(_hosts_config(**keys))
    assert info.value.key is not None and info.value.key.startswith(key), info.value
    assert says in str(info.value)
    assert SECRET not in str(info.value)


def test_hosts_with_default_port_and_per_host_configs() -> None:
    config = parse_config(
        _hosts_config(hosts=["10.0.0.1:3307", "10.0.0.2", "[fd00::3]:3308"], port=3310)
    )
    remote = config.database.remote_config
    assert isinstance(remote, MySQLConfig)
    assert remote.addresses == [("10.0.0.1", 3307), ("10.0.0.2", 3310), ("fd00::3", 3308)]
    assert remote.ha_mode == "replication" and remote.read_consistency == "read_your_writes"
    assert remote.max_replication_lag == 5.0
    one = remote.for_host("fd00::3", 3308)
    assert one.addresses == [("fd00::3", 3308)]
    assert one.describe().endswith("@[fd00::3]:3308/" + one.database)
    assert SECRET not in remote.describe() and "10.0.0.2:3310" in remote.describe()
    # Servers differ, so pools differ; the whole list is one target.
    assert one.pool_key() != remote.pool_key()
    assert remote.for_host("10.0.0.2", 3310).pool_key() != one.pool_key()


def test_galera_causal_reads_only_with_read_your_writes() -> None:
    def remote(**keys: Any) -> MySQLConfig:
        parsed = parse_config(_hosts_config(hosts=["a", "b"], ha_mode="galera", **keys))
        config = parsed.database.remote_config
        assert isinstance(config, MySQLConfig)
        return config

    assert remote().galera_causal_reads and remote().for_host("a", 3306).galera_causal_reads
    assert not remote(read_consistency="eventual").galera_causal_reads
    single = parse_config(SEED).database.remote_config
    assert isinstance(single, MySQLConfig) and not single.galera_causal_reads
