"""resumewatch: watch an economy restart, one Kafka event at a time."""

__version__ = "0.1.0"
