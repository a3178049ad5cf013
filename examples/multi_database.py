"""The predecessor's Multi-Database Operations example."""

from _config import example_config

from async_db_client.sync import DBClientFactory

factory = DBClientFactory(example_config({"database": {"remote_type": "mysql"}}))

# Working with multiple database tiers
db = factory.create_client()

# Remote database operations
db.insert_or_update_hash({"path": "/home/user/documents", "current_hash": "abc123def456"})
remote_record = db.get_hash_record("/home/user/documents")
if remote_record:
    print(f"Remote hash: {remote_record['current_hash']}")

# Core database operations
try:
    dashboard = db.get_dashboard_content()
    error_count = db.get_log_count_last_24h("ERROR")
    print(f"Dashboard shows {error_count} errors in last 24 hours")
except NotImplementedError:
    print("Core database not available")

# Pipeline database operations
try:
    pipeline_updates = db.get_pipeline_updates()
    official_sites = db.get_official_sites()
    print(f"Pipeline has {len(pipeline_updates)} updates for {len(official_sites)} sites")
except NotImplementedError:
    print("Pipeline database not available")
db.close()
