"""The predecessor's Error Handling example, with this library's exceptions.

``mysql.connector.Error`` is gone: connection failures are ``DBConnectionError`` (a
``ConnectionError``), configuration mistakes ``ConfigurationError`` (a ``ValueError``).
The server here is a closed port on this machine, so the failure is real and quick.
"""

from async_db_client import DBConnectionError
from async_db_client.sync import DBClientFactory

try:
    config = {
        "database": {
            "remote_type": "mysql",
            "remote_config": {
                "host": "127.0.0.1",
                "port": 1,  # nothing listens here
                "database": "hash_db",
                "user": "user",
                "password": "wrong_password",  # Intentionally wrong
                "pool": {"acquire_timeout": 2, "connect_timeout": 1},
            },
        }
    }

    factory = DBClientFactory(config)
    db = factory.create_client()

    # Try to perform an operation
    health = db.health_check()
    if not health["local_db"]:
        print("Database connection failed")
    db.get_hash_record("/home/user/documents")

except DBConnectionError as e:
    print(f"Connection error: {e}")
except ValueError as e:
    print(f"Configuration error: {e}")

# A typo in the configuration names the key, and never shows the password.
try:
    DBClientFactory(
        {
            "database": {
                "remote_type": "mysql",
                "remote_config": {
                    "host": "localhost",
                    "database": "hash_db",
                    "usr": "user",
                    "password": "secret",
                },
            }
        }
    )
except ValueError as e:
    print(f"Configuration error: {e}")
