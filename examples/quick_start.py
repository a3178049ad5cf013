"""The predecessor's Quick Start, unchanged but for the import line (and where it points)."""

from _config import example_config

from async_db_client.sync import DBClientFactory

# Configure database connections
config = {
    "database": {
        "remote_type": "mysql",
        "remote_config": {
            "host": "localhost",
            "database": "hash_db",
            "user": "user",
            "password": "password",
        },
        "core_type": "mysql",
        "core_config": {
            "host": "core.example.com",
            "database": "core_db",
            "user": "core_user",
            "password": "core_password",
        },
    }
}
config = example_config(config)

# Create database client
factory = DBClientFactory(config)
db = factory.create_client()

# Store hash information
hash_record = {
    "path": "/home/user/documents",
    "current_hash": "abc123def456",
    "dirs": ["subfolder1", "subfolder2"],
    "files": ["document1.txt", "document2.pdf"],
    "links": ["shortcut1"],
}

success = db.insert_or_update_hash(hash_record)
print(f"Hash record {'stored' if success else 'failed'}")

# Retrieve hash information
record = db.get_hash_record("/home/user/documents")
if record:
    print(f"Current hash: {record.get('current_hash')}")
    print(f"Last updated: {record.get('current_dtg_latest')}")
