"""What runs the stages: the commit protocol (``checkpoint``), the handlers' shared records and
tables (``state``), record batches (``produce``), the tables' store (``store``), and every
reach into the frameworks' internals (``internals``)."""
