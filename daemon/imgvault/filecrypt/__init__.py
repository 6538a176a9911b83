"""File-level encryption of image stores: CMS AuthEnvelopedData (AES-256-GCM, RSA-OAEP).

`format` frames and parses the DER, `stream` encrypts, decrypts and rewraps in constant memory,
`recipients` loads and checks certificates and keys, `keystore` keeps them on the host, and
`inplace` replaces files in a store crash-safely. The format is specified in
docs/filecrypt-format.md.
"""
