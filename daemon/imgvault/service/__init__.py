"""`imgvaultd`, the imgvault system service."""
