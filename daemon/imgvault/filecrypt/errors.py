"""Errors of file-level encryption; each says what is wrong with which file and what to do."""

from imgvault.errors import ImgvaultError


class FilecryptError(ImgvaultError):
    """Base of every file-encryption error."""


class NotEncryptedError(FilecryptError):
    """The file is not an imgvault/CMS AuthEnvelopedData file."""


class MalformedError(FilecryptError):
    """The file claims to be CMS AuthEnvelopedData but its structure is broken or truncated."""


class UnsupportedError(FilecryptError):
    """Well-formed CMS that uses an algorithm or layout outside the imgvault format."""


class NoMatchingRecipientError(FilecryptError):
    """None of the file's recipients is the given key."""


class WrongKeyError(FilecryptError):
    """The key matches a recipient identifier but cannot unwrap the content key."""


class AuthenticationError(FilecryptError):
    """The GCM tag does not verify: the file was altered or damaged. No plaintext is kept."""


class UnsafeFileError(FilecryptError):
    """A path the in-place engine refuses to touch (symlink, device, hard links, outside root)."""


class UnusableKeyError(FilecryptError):
    """A certificate or private key that cannot be used (wrong type, size, usage, expired)."""
