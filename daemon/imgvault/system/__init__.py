"""Running the system tools imgvault depends on (cryptsetup, losetup, blkid, mkfs, ...)."""
