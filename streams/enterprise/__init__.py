"""The enterprise stage: per-enterprise state (``state``, pure) and its batch handler."""
