"""The predecessor's Complete Workflow example, through the sync facade."""

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
        "pipeline_type": "mssql",
        "pipeline_config": {
            "server": "pipeline.example.com",
            "database": "pipeline_db",
            "username": "pipeline_user",
            "password": "pipeline_password",
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
    "target_hash": "abc123def456",
    "session_id": "scan_20240108_001",
}

success = db.insert_or_update_hash(hash_record)
print(f"Hash record {'stored' if success else 'failed'}")

# Log the operation
log_entry = {
    "summary_message": "Hash record updated",
    "detailed_message": f"Updated hash for {hash_record['path']}",
    "log_level": "INFO",
    "session_id": "scan_20240108_001",
}
log_id = db.put_log(log_entry)
print(f"Log entry created with ID: {log_id}")

# Check for priority updates
priority_paths = db.get_priority_updates()
for path in priority_paths:
    print(f"Priority update needed: {path}")

# Get dashboard metrics (if core DB is available)
try:
    dashboard = db.get_dashboard_content()
    print(f"System health: {dashboard['live_current']} sites online")
except NotImplementedError:
    print("Core database not configured")

# Check database health
health = db.health_check()
print(f"Database health: {health}")
