"""LZ4 at its fast level for the batches the worker produces.

aiokafka compresses every LZ4 batch at level 9 (LZ4's high-compression mode) and has no
setting for it. On the worker's output that took about an eighth of its CPU (py-spy), ten
times the default level's cost for batches a third smaller. Both levels write the same LZ4
frame format, which every Kafka client and broker reads.
"""

from __future__ import annotations

from typing import Any

from aiokafka import codec

LEVEL = 1


def encode(payload: Any) -> bytes:
    return bytes(codec.lz4_encode(payload, level=LEVEL))


def install() -> None:
    """Make aiokafka's batch builders (the compiled one and the pure-Python one) in this
    process compress LZ4 at ``LEVEL``."""
    from aiokafka.record import default_records, legacy_records

    modules: list[Any] = [default_records, legacy_records]
    try:
        from aiokafka.record._crecords import default_records as c_default
        from aiokafka.record._crecords import legacy_records as c_legacy
    except ImportError:  # aiokafka built without its extensions
        pass
    else:
        modules += [c_default, c_legacy]
    for module in modules:
        if hasattr(module, "lz4_encode"):
            module.lz4_encode = encode
