"""What every tier shares: a store underneath, a clock, failure logging, transactions.

A tier is two things, written once for every backend:

* its **contract**, a repository class (:class:`~.remote.RemoteRepository`, ...) whose
  public methods are the API: they validate arguments, apply the rules (an invalid record
  returns False and is logged at ERROR, never a half write), read "now" from the clock,
  and log every failure once, naming tier and operation;
* its **store protocol** (:class:`~.remote.RemoteStore`, ...): the few primitives a
  backend implements (the in-memory fakes in ``backends/memory/``, SQL in
  ``backends/sql/``). A store receives validated values and the current time only, so
  every backend answers alike.

Database failures are never turned into False/None: they raise from the
:mod:`async_db_client.errors` hierarchy. The client's and the sync facade's delegation
methods are generated from the contracts (``tools/gen_facades.py``).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

from pydantic import BaseModel

from ..clock import Clock, SystemClock
from ..errors import AsyncDBClientError, InvalidInputError
from ..models import BulkResult, LogEntry, RejectedRecord, parse_model
from ..telemetry import hooks
from ..validation import check_idempotency_key

__all__ = ["LogStore", "Repository", "Store", "Tier", "Validated", "field_of"]

logger = logging.getLogger("async_db_client")

Tier = Literal["remote", "core", "pipeline"]


class Store(Protocol):
    """What every tier's store has besides its own primitives."""

    async def ping(self) -> None:
        """Round-trip to the database; raise if it is unusable."""
        ...

    async def migrate(self) -> int:
        """Bring the schema up to date now; the version reached (0: no schema)."""
        ...

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Self]:
        """A store of the same kind whose calls share one transaction (committed when the
        block exits normally, rolled back when it raises; nothing inside is retried)."""
        ...

    async def aclose(self) -> None:
        """Release what the store itself holds (pools are closed by their manager)."""
        ...


class LogStore(Store, Protocol):
    """A store that keeps log entries (the remote and core tiers)."""

    async def insert_log(self, entry: LogEntry, key: str) -> int:
        """Insert ``entry`` (its timestamp set); if ``key`` was stored already, its id."""
        ...


S = TypeVar("S", bound=Store)
M = TypeVar("M", bound=BaseModel)


class Repository(Generic[S]):
    """A tier's contract over a store: the clock, failure logging, health, transactions."""

    tier: ClassVar[Tier]
    #: The key of this tier in ``health_check()``'s answer.
    health_key: ClassVar[str]

    def __init__(self, store: S, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r})"

    def _now(self) -> datetime:
        return self.clock.now()

    def _logged(self, operation: str, batch: int = 0) -> contextlib.AbstractContextManager[None]:
        """``with self._logged(op):`` logs one line per failure, naming tier and operation;
        the one place telemetry observes public calls (``batch``: items of a bulk call)."""
        if hooks.observe_call is not None:
            return hooks.observe_call(self, operation, batch, _FailureLog(self.tier, operation))
        return _FailureLog(self.tier, operation)

    async def health_check(self) -> dict[str, bool]:
        """``{key: True}`` if the database answers, else False (never raises); the key is
        ``local_db``, ``core_db`` or ``pipeline_db``."""
        return {key: why is None for key, why in (await self.health_report()).items()}

    async def health_report(self) -> dict[str, str | None]:
        """``{key: None}`` if the database answers, else ``{key: why}`` (never raises)."""
        try:
            await self.store.ping()
        except Exception as exc:  # health checks report, they do not raise
            logger.warning("%s health check failed: %s: %s", self.tier, type(exc).__name__, exc)
            return {self.health_key: str(exc) or repr(exc)}
        return {self.health_key: None}

    async def migrate(self) -> int:
        """Bring this tier's schema up to date; return the schema version (0: no schema)."""
        return await self.store.migrate()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Self]:
        """Group calls on this tier into one transaction.

        ``async with repo.transaction() as tx:`` yields a repository of the same contract
        whose calls share one transaction: committed when the block exits normally,
        rolled back when it raises. Calls inside are not retried. Transactions do not nest.
        """
        async with self.store.transaction() as store:
            yield type(self)(store, clock=self.clock)

    async def aclose(self) -> None:
        """Release what this repository holds (pools are closed by their manager)."""
        await self.store.aclose()

    async def _put_log(
        self,
        store: LogStore,
        operation: str,
        args_dict: Mapping[str, Any] | LogEntry,
        idempotency_key: str | None,
    ) -> int | None:
        """The rules of ``put_log`` and ``put_core_log``, written once."""
        try:
            entry = parse_model(LogEntry, args_dict, "log entry")
        except InvalidInputError as exc:
            logger.error("%s.%s rejected an entry: %s", self.tier, operation, exc)
            return None
        if entry.timestamp is None:
            entry = entry.model_copy(update={"timestamp": self._now()})
        key = check_idempotency_key(idempotency_key) or uuid.uuid4().hex
        with self._logged(operation):
            return await store.insert_log(entry, key)


class Validated(Generic[M]):
    """The valid items of a bulk call, validated one by one as they are iterated.

    Items that fail validation (or ``check``) are skipped and collected in
    :attr:`rejected` with their index, their path if they have one, and the reason, so
    a bulk call stores what is valid and reports the rest (:meth:`result`). Iterating
    lazily lets a backend overlap validation with its writes.
    """

    def __init__(
        self,
        items: Iterable[Mapping[str, Any] | M],
        model: type[M],
        *,
        name: str,
        what: str,
        check: Callable[[M], None] | None = None,
    ) -> None:
        """``name`` is the argument (``records``), ``what`` what it holds (``records``,
        ``log entries``); ``check(item)`` may raise InvalidInputError for extra rules."""
        if isinstance(items, Mapping | str | bytes) or not isinstance(items, Iterable):
            raise InvalidInputError(f"{name} must be an iterable of {what}", field=name)
        self.items = list(items)
        self.rejected: list[RejectedRecord] = []
        self._model = model
        self._name = name
        self._check = check

    def __iter__(self) -> Iterator[M]:
        with_path = "path" in self._model.model_fields
        for index, item in enumerate(self.items):
            try:
                value = parse_model(self._model, item, f"{self._name}[{index}]")
                if self._check is not None:
                    self._check(value)
            except InvalidInputError as exc:
                path = field_of(item, "path") if with_path else None
                self.rejected.append(
                    RejectedRecord(
                        index=index, path=path if isinstance(path, str) else None, reason=exc.reason
                    )
                )
                continue
            yield value

    def result(self, stored: int) -> BulkResult:
        return BulkResult(stored=stored, rejected=self.rejected)


class _FailureLog:
    # A class, not @contextmanager: it wraps every call, and this is several times cheaper.
    __slots__ = ("operation", "tier")

    def __init__(self, tier: str, operation: str) -> None:
        self.tier = tier
        self.operation = operation

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Messages of this library's errors carry no secrets (see errors.py).
        if isinstance(exc, AsyncDBClientError) and not isinstance(exc, InvalidInputError):
            logger.error("%s.%s failed: %s: %s", self.tier, self.operation, type(exc).__name__, exc)


def field_of(record: Any, key: str) -> Any:
    """``record[key]`` of a mapping, ``record.key`` of a model; None if it has none."""
    if isinstance(record, Mapping):
        return record.get(key)
    return getattr(record, key, None)
