"""Create what the pipeline needs before it runs: Kafka topics and the ClickHouse schema."""

from __future__ import annotations

import time

from resumewatch.settings import Settings
from resumewatch.stack.procs import StackError


def ensure_topics(settings: Settings) -> list[str]:
    """Create the contract and internal topics that are missing; returns the created ones."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    try:
        admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    except KafkaError as exc:
        raise StackError(
            f"No Kafka broker answers at {settings.kafka_bootstrap}; run `resumewatch stack up`."
        ) from exc
    try:
        existing = set(admin.list_topics())
        wanted = [
            settings.input_topic,
            settings.dlq_topic,
            settings.partials_topic,
            settings.region_rows_topic,
            settings.enterprise_rows_topic,
            settings.alerts_topic,
            settings.supply_topic,
        ]
        new = [
            NewTopic(
                t,
                settings.partitions,
                settings.topic_replication,
                topic_configs=settings.topic_configs,
            )
            for t in wanted
            if t not in existing
        ]
        # The worker's table changelogs too: a worker that creates them itself may subscribe
        # before they are in the cluster metadata and leave their partitions unassigned.
        new += [
            NewTopic(
                t,
                settings.partitions,
                settings.topic_replication,
                topic_configs={"cleanup.policy": "compact", **settings.topic_configs},
            )
            for t in settings.changelog_topics
            if t not in existing
        ]
        created = []
        for topic in new:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        # Let the new topics reach the broker's metadata before anyone subscribes to them.
        everything = set(wanted) | set(settings.changelog_topics)
        deadline = time.monotonic() + 30
        while not everything <= set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
        described = admin.describe_topics([settings.input_topic])
        have = len(described[0]["partitions"]) if described else settings.partitions
        if have != settings.partitions:
            raise StackError(
                f"Topic {settings.input_topic} has {have} partitions but the pipeline is "
                f"configured for {settings.partitions}; set RESUMEWATCH_PARTITIONS={have}."
            )
        return created
    finally:
        admin.close()


def ensure_schema(settings: Settings) -> int:
    from sinks.runner import clickhouse_client
    from sinks.schema import migrate

    client = clickhouse_client(settings)
    try:
        return migrate(client.execute, settings.clickhouse_database)
    finally:
        client.disconnect()


def delete_topics(settings: Settings) -> list[str]:
    """Delete the pipeline's topics: the input, dead-letter and alerts topics and every topic
    named after its internal prefix (internal topics, changelogs, Faust's own). For scratch
    pipelines (tests, benchmarks), whose data should not pile up in the broker."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, UnknownTopicOrPartitionError

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap.split(","))
    try:
        ours = {settings.input_topic, settings.dlq_topic, settings.alerts_topic}
        doomed = [
            t
            for t in admin.list_topics()
            if t in ours or t.startswith(f"{settings.internal_prefix}-")
        ]
        for topic in doomed:
            try:
                admin.delete_topics([topic])
            except UnknownTopicOrPartitionError:
                pass
            except KafkaError as exc:
                raise StackError(f"Could not delete topic {topic}: {exc}") from exc
        return doomed
    finally:
        admin.close()
