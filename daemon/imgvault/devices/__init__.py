"""Block devices: inventory (udev/sysfs/blkid), loop devices, and drive self-encryption/health."""
