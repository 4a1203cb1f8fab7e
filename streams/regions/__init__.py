"""The region stages: district, city and province sums (``aggregates``, pure) and their batch
handlers."""
