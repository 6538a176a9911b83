"""Fixtures of the file-encryption tests (defined in fc_helpers, shared with the tests)."""

from fc_helpers import pki

__all__ = ["pki"]
