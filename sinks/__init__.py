"""ClickHouse: schema migrations, the batched idempotent writer and the sink runner."""
