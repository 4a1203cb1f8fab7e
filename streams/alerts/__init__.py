"""Alerts: the rules and their state machine (``rules``, pure) and the stage's batch handler."""
