"""The local stack: Apache Kafka (KRaft) and ClickHouse as plain processes on loopback."""

from resumewatch.stack.procs import StackError
from resumewatch.stack.stack import Stack

__all__ = ["Stack", "StackError"]
