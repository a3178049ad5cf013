"""Configuration fuzzing: hypothesis mutates a complete, valid configuration (a value of the
wrong type at any key, unknown keys, missing required keys, wrong tier types, nested
garbage). Every malformed configuration raises :class:`ConfigurationError` (never pydantic's
ValidationError, never anything else); its ``key`` is a dotted path that exists in the input
(or is the required key that was removed) and names the mutated key, a key inside it, or the
section holding it; and the configured password appears nowhere: not in the message, the
key, the arguments, the chained exceptions or the formatted traceback.
"""

from __future__ import annotations

import copy
import math
import traceback
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import async_db_client.config
import async_db_client.sync
from async_db_client import ConfigurationError, DBClientFactory
from async_db_client.config import parse_config

PASSWORD = "Fuzz-P4ss'w\"rd;{x}=%s-7c1e"
POOL = {
    "min_size": 1,
    "max_size": 4,
    "acquire_timeout": 5.0,
    "max_waiting": 0,
    "connect_timeout": 2.0,
    "connect_retry_budget": 3.0,
    "query_timeout": 30.0,
    "max_lifetime": 600.0,
    "max_idle": 60.0,
    "check_after_idle": 1.0,
    "reconnect_backoff_initial": 0.1,
    "reconnect_backoff_max": 1.0,
    "retry_attempts": 2,
    "close_timeout": 1.0,
    "bulk_connections": 2,
}
BASE: dict[str, Any] = {
    "app": {"threads": 4},  # not ours: ignored
    "database": {
        "remote_type": "mysql",
        "remote_config": {
            "host": "db.example",
            "port": 3306,
            "database": "remote_db",
            "user": "scanner",
            "password": PASSWORD,
            "auto_migrate": True,
            "driver": "aiomysql",
            "ssl": {
                "ca": "/etc/ssl/ca.pem",
                "cert": "/etc/ssl/client.pem",
                "key": "/etc/ssl/client.key",
                "verify_cert": True,
                "verify_identity": True,
            },
            "pool": dict(POOL),
        },
        "core_type": "mysql",
        "core_config": {
            "host": "core.example",
            "database": "core_db",
            "user": "core",
            "password": PASSWORD,
            "driver": "odbc",
            "odbc_driver": "MariaDB Unicode",
            "pool": dict(POOL),
        },
        "pipeline_type": "mssql",
        "pipeline_config": {
            "server": "pipe.example",
            "port": 1433,
            "database": "pipeline_db",
            "username": "pipe",
            "password": PASSWORD,
            "driver": "ODBC Driver 18 for SQL Server",
            "encrypt": "strict",
            "trust_server_certificate": False,
            "odbc_attributes": {"APP": "scanner"},
            "pool": dict(POOL),
        },
    },
}
ODBC_CONNECT = {"odbc_connect": f"DRIVER={{ODBC Driver 18 for SQL Server}};PWD={PASSWORD}"}


def test_the_base_configuration_is_valid() -> None:
    config = parse_config(BASE)
    assert config.database.tier("pipeline") is not None
    parse_config({"database": {"pipeline_type": "mssql", "pipeline_config": ODBC_CONNECT}})


def paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every key path under ``database`` (the only section the library reads)."""
    found = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            if prefix or key == "database":
                found.append((*prefix, key))
                found.extend(paths(value, (*prefix, key)))
    return found


def get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


PATHS = paths(BASE)
DICT_PATHS = [p for p in PATHS if isinstance(get(BASE, p), dict)]
#: Every key some config section accepts (BASE leaves many out). Hypothesis also draws
#: the string constants of the code under test, so a drawn "unknown" name may be one.
KNOWN_KEYS = {
    key
    for model in vars(async_db_client.config).values()
    if isinstance(model, type) and issubclass(model, pydantic.BaseModel)
    for name, field in model.model_fields.items()
    for key in (name, field.alias)
    if key
}
#: Keys without a default: removing one must be reported under its own name.
REQUIRED = {
    ("database",),  # a dict without it is refused as a typo (issue 11)
    ("database", "remote_config", "host"),
    ("database", "remote_config", "database"),
    ("database", "remote_config", "user"),
    ("database", "core_config", "host"),
    ("database", "core_config", "database"),
    ("database", "core_config", "user"),
    ("database", "pipeline_config", "server"),
    ("database", "pipeline_config", "database"),
    ("database", "pipeline_config", "username"),
    ("database", "remote_config", "ssl", "cert"),  # key is given: cert must be too
    ("database", "remote_config", "ssl", "key"),
    *(("database", f"{tier}_type") for tier in ("remote", "core", "pipeline")),
    *(("database", f"{tier}_config") for tier in ("remote", "core", "pipeline")),
}

# Values no key accepts: containers of junk, sets, complex numbers, NaN, a dict of unknown
# keys (for a section) holding junk (for a scalar or for odbc_attributes' string values).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=10),
    st.sampled_from([Decimal("NaN"), Decimal("1e400"), -0.0, float("inf"), PASSWORD + "x"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=8).map("zz_{}".format), inner, max_size=3),
    ),
    max_leaves=8,
)
wrong = st.one_of(
    st.lists(junk, max_size=3),
    st.lists(junk, max_size=3).map(tuple),
    st.frozensets(st.integers(), max_size=3),
    st.complex_numbers(allow_nan=False, allow_infinity=False, min_magnitude=1),
    st.just(math.nan),
    st.just(Ellipsis),
    st.builds(object),
    st.dictionaries(
        st.text(max_size=8).map("zz_{}".format),
        st.one_of(st.lists(junk, max_size=2), st.builds(object)),
        min_size=1,
        max_size=3,
    ),
)
infinite = st.sampled_from([math.inf, -math.inf, math.nan])
tier_types = st.one_of(
    st.text(max_size=12), st.sampled_from(["mysql", "mssql", "local", "MYSQL", "sqlite", ""])
)


def exists(config: Any, key: str) -> bool:
    """``key`` (dotted) names a key of ``config``; keys may themselves contain dots."""
    if key == "":
        return True
    if not isinstance(config, Mapping):
        return False
    for name, value in config.items():
        text = str(name)
        if key == text or (key.startswith(text + ".") and exists(value, key[len(text) + 1 :])):
            return True
    return False


def names_a_key(config: Any, error: ConfigurationError) -> bool:
    """The error's key exists in ``config``, or is a required key missing from a section
    that does exist (and the message says so)."""
    key = error.key
    if key is None:
        return False
    parent = key.rpartition(".")[0]
    return exists(config, key) or (
        exists(config, parent)
        and f"{key}: " in str(error)
        and "required" in str(error).split(f"{key}: ", 1)[1].split(";")[0]
    )


def related(key: str, mutated: tuple[str, ...]) -> bool:
    """``key`` is the mutated key, a key inside it, or a section that holds it."""
    path = ".".join(mutated)
    return key == path or key.startswith(path + ".") or path.startswith(key + ".")


def secret_free(exc: BaseException) -> None:
    """The password is nowhere in ``exc``: message, repr, args, key, chained errors (even
    a suppressed context), formatted traceback."""
    texts = ["".join(traceback.format_exception(exc))]
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts += [str(error), repr(error), repr(error.args), str(getattr(error, "key", ""))]
        error = error.__cause__ or error.__context__
    for text in texts:
        assert PASSWORD not in text


def refused(config: Any, factory: int = 0) -> ConfigurationError:
    """Parse ``config`` as a user would (parse_config, the async or the sync factory)
    and return the ConfigurationError; anything else (or nothing) fails the test."""
    builders = [parse_config, DBClientFactory, async_db_client.sync.DBClientFactory]
    try:
        builders[factory % 3](config)
    except ConfigurationError as exc:
        assert isinstance(exc, ValueError)
        secret_free(exc)
        assert exc.key is None or exc.key in str(exc)
        return exc
    except BaseException as exc:  # pydantic's ValidationError, TypeError, ...
        pytest.fail(f"{type(exc).__name__} instead of ConfigurationError: {exc!r}"[:2000])
    pytest.fail("a malformed configuration was accepted")


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(path=st.sampled_from(PATHS), value=wrong, factory=st.integers(0, 2))
@example(path=("database", "pipeline_config", "encrypt"), value={"zz_": [None]}, factory=0)
@example(path=("database", "pipeline_config", "odbc_attributes"), value={"zz_": [1]}, factory=0)
@example(path=("database", "remote_config"), value=["host"], factory=1)
def test_a_wrong_value_at_any_key_names_it(path: tuple[str, ...], value: Any, factory: int) -> None:
    config = copy.deepcopy(BASE)
    get(config, path[:-1])[path[-1]] = value
    error = refused(config, factory)
    assert error.key is not None and names_a_key(config, error), error
    assert related(error.key, path), (error.key, path)


@FUZZ
@given(
    path=st.sampled_from([p for p in PATHS if get(BASE, p) is not None and p[-1] in POOL]),
    value=infinite,
)
def test_infinite_and_nan_durations_are_refused(path: tuple[str, ...], value: float) -> None:
    config = copy.deepcopy(BASE)
    get(config, path[:-1])[path[-1]] = value
    assert refused(config).key == ".".join(path)


@FUZZ
@given(
    section=st.sampled_from([p for p in DICT_PATHS if p[-1] != "odbc_attributes"]),
    name=st.text(min_size=1, max_size=15),
    value=junk,
)
def test_an_unknown_key_is_named(section: tuple[str, ...], name: str, value: Any) -> None:
    config = copy.deepcopy(BASE)
    known = get(config, section)
    if name in known or name in KNOWN_KEYS or name == "type":
        name += "_unknown"
    known[name] = value
    error = refused(config)
    assert error.key == ".".join((*section, name)), error


@FUZZ
@given(path=st.sampled_from(sorted(REQUIRED)), factory=st.integers(0, 2))
def test_a_missing_required_key_is_named(path: tuple[str, ...], factory: int) -> None:
    config = copy.deepcopy(BASE)
    del get(config, path[:-1])[path[-1]]
    error = refused(config, factory)
    assert error.key == ".".join(path), error


@FUZZ
@given(tier=st.sampled_from(["remote", "core", "pipeline"]), kind=tier_types)
def test_a_wrong_tier_type_is_named(tier: str, kind: str) -> None:
    config = copy.deepcopy(BASE)
    config["database"][f"{tier}_type"] = kind
    allowed = {"remote": "mysql", "core": "mysql", "pipeline": "mssql"}
    if kind == allowed[tier]:
        parse_config(config)  # unchanged: still valid
        return
    error = refused(config)
    assert error.key is not None and names_a_key(config, error), error
    # The type itself, or (a valid engine for the tier, but not this config's) the
    # first key of the config that engine does not know.
    assert related(error.key, ("database", f"{tier}_type")) or related(
        error.key, ("database", f"{tier}_config")
    ), error.key


@FUZZ
@given(
    mutations=st.lists(
        st.tuples(st.sampled_from(PATHS), st.one_of(wrong, st.just(KeyError))),
        min_size=2,
        max_size=5,
    ),
    wrap=st.booleans(),
)
def test_several_mutations_at_once(
    mutations: list[tuple[tuple[str, ...], Any]], wrap: bool
) -> None:
    config: Any = copy.deepcopy(BASE)
    changed, removed = [], []
    for path, value in mutations:
        try:
            parent = get(config, path[:-1])
        except (KeyError, TypeError, IndexError):
            continue  # an earlier mutation replaced or removed a section on the way
        if not isinstance(parent, dict):
            continue
        if value is KeyError:
            if parent.pop(path[-1], KeyError) is not KeyError:
                removed.append(path)
        else:
            parent[path[-1]] = value
            changed.append(path)
    changed = [p for p in changed if exists(config, ".".join(p))]  # not removed since
    # A removal inside a section removed later went with it (e.g. a required key of
    # remote_config, then the whole database section, which is required itself).
    removed = [p for p in removed if len(p) == 1 or exists(config, ".".join(p[:-1]))]
    if wrap:  # any Mapping is accepted, not only dicts
        config = MappingProxyType(config)
    try:
        parse_config(config)
    except ConfigurationError as exc:
        secret_free(exc)
        assert exc.key is not None and names_a_key(config, exc), exc
        assert any(related(exc.key, p) for p in changed + removed), (exc.key, mutations)
    else:
        # Only removing optional keys leaves a valid configuration.
        assert not changed and not REQUIRED.intersection(removed), mutations


@settings(max_examples=100, deadline=None)
@given(garbage=st.one_of(junk, wrong))
def test_garbage_for_the_whole_database_section(garbage: Any) -> None:
    if isinstance(garbage, Mapping) and not garbage:
        return  # {} is a valid (empty) database section
    error = refused({"database": garbage})
    assert error.key is not None and error.key.startswith("database")


@pytest.mark.parametrize("config", [42, "database=mysql", ["database"], b"{}", 1.5])
def test_a_configuration_that_is_not_a_mapping(config: Any) -> None:
    error = refused(config)
    assert error.key is None and "must be a mapping" in str(error)


def test_no_pydantic_error_is_kept_behind_the_configuration_error() -> None:
    """pydantic's error text shows input values (truncated to its ends, so a short password
    last in a section shows whole). It used to stay attached as the suppressed
    ``__context__``; now the ConfigurationError is raised with no context at all."""
    short = "Pw9#"
    config = {"database": {"remote_config": {"host": "h", "database": "d", "password": short}}}
    error = refused(config)
    assert error.key == "database.remote_type"
    assert error.__context__ is None and error.__cause__ is None
    assert short not in "".join(traceback.format_exception(error))
