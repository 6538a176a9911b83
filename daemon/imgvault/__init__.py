"""imgvault: the encryption manager for medical-imaging servers."""

__version__ = "0.1.0"
