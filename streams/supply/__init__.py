"""Supplier readiness: the series (``readiness``, pure) and the stage's batch handler."""
