"""SignVault: a self-hosted PAdES signing server."""

__version__ = "0.1.0"
