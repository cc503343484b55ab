"""aimi: a self-hosted inference server for open models."""

__version__ = "0.1.0"
