"""Recording MS-TDS peer: a loopback fake SQL Server for tests through the real driver.

    import pyodbc
    from tests.support.tds_peer import Column, Reply, ResultSet, ServerError, TDSPeer

    pyodbc.pooling = False
    with TDSPeer() as peer:
        peer.on(r"^INSERT INTO log", ResultSet([Column("log_id", "bigint")], [(1,)]))
        peer.on(r"^MERGE", 1)  # rowcount
        peer.on(r"^UPDATE", ServerError(1205, "deadlock victim", severity=13))
        conn = pyodbc.connect(peer.connection_string(database="db"), autocommit=False)
        ...
        assert peer.statements() == [...]   # SQL with the driver's @P1..@Pn markers
        assert peer.tm_ops() == ["begin", "commit"]

``TDSPeer(responder=fn)`` is the general form: ``fn(request)`` returns a ``Reply`` (or a
``ResultSet`` / rowcount / ``ServerError``) or None for the default reply. See server.py.
"""

from .engine import DEFAULT_PARAM_TYPE, describe_params_reply
from .models import Column, Info, Param, Reply, Request, ResultSet, ServerError
from .server import DRIVER_NAME, PeerError, TDSPeer

__all__ = [
    "DEFAULT_PARAM_TYPE",
    "DRIVER_NAME",
    "Column",
    "Info",
    "Param",
    "PeerError",
    "Reply",
    "Request",
    "ResultSet",
    "ServerError",
    "TDSPeer",
    "describe_params_reply",
]
