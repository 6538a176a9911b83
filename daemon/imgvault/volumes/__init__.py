"""LUKS volumes: the cryptsetup wrapper, typed header metadata and their lifecycle."""
