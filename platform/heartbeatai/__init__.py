"""HeartBeatAI study platform."""

__version__ = "0.1.0"
