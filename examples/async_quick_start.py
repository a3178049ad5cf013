"""The Quick Start on the async API, as an async scanner would use it."""

import asyncio

from _config import example_config

from async_db_client import DBClientFactory


async def main() -> None:
    config = example_config({"database": {"remote_type": "mysql"}})
    async with DBClientFactory(config).create_client() as db:
        stored = await db.insert_or_update_hash(
            {
                "path": "/home/user/documents",
                "current_hash": "abc123def456",
                "files": ["document1.txt", "document2.pdf"],
            }
        )
        print(f"Hash record {'stored' if stored else 'failed'}")
        # Many independent reads at once share the client's pool.
        records = await asyncio.gather(
            *(db.get_hash_record(p) for p in ["/home/user/documents", "/missing"])
        )
        print([r["current_hash"] if r else None for r in records])
        async with db.transaction():
            await db.insert_or_update_hash({"path": "/home/user/a", "current_hash": "1"})
            await db.put_log({"summary_message": "two writes, one transaction"})
        print(f"Health: {await db.health_check()}")


if __name__ == "__main__":
    asyncio.run(main())
