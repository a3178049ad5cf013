"""The database drivers, each adapting one async driver package to
:class:`~async_db_client.drivers.base.Driver`."""
