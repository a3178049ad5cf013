"""The predecessor's Batch Operations example, then the same batch with the bulk call."""

from _config import example_config

from async_db_client.sync import DBClientFactory

config = example_config({"database": {"remote_type": "mysql"}})
db = DBClientFactory(config).create_client()

# Batch hash updates
hash_records = [
    {
        "path": "/home/user/documents",
        "current_hash": "abc123def456",
        "files": ["doc1.txt", "doc2.pdf"],
        "session_id": "batch_001",
    },
    {
        "path": "/home/user/pictures",
        "current_hash": "def456abc123",
        "files": ["pic1.jpg", "pic2.png"],
        "session_id": "batch_001",
    },
]

successful_updates = 0
for record in hash_records:
    if db.insert_or_update_hash(record):
        successful_updates += 1

print(f"Successfully updated {successful_updates} of {len(hash_records)} records")

# Batch log cleanup
old_logs = db.get_logs(older_than_days=30)
if old_logs:
    log_ids = [log["log_id"] for log in old_logs]
    deleted_count, failed_deletes = db.delete_log_entries(log_ids)
    print(f"Cleaned up {deleted_count} old log entries")

# New in async_db_client: one call validates and stores a whole batch, and says which
# records it refused and why.
result = db.insert_or_update_hashes(hash_records + [{"path": "/bad", "current_hash": ""}])
print(f"Bulk call stored {result['stored']}, rejected {len(result['rejected'])}")
for rejected in result["rejected"]:
    print(f"  record #{rejected['index']} ({rejected['path']}): {rejected['reason']}")
db.close()
