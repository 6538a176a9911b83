"""Fixtures of the de-identification tests (defined in dicom_phi, shared with the tests)."""

from dicom_phi import phi_series

__all__ = ["phi_series"]
