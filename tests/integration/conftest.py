"""Fixtures shared by the integration tests."""

from tests.integration.smtp import smtp

__all__ = ["smtp"]
