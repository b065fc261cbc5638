"""The Upstash Vector dialect, under `/upstash/{index}`."""

from app.api.upstash.controllers import UpstashController

__all__ = ["UpstashController"]
