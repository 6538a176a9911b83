"""`imgvaultctl`, the admin's command line."""
