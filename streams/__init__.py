"""The Faust app: agents and tables around a pure aggregation core (streams.core)."""
