"""Benchmark file-level encryption against its baselines, side by side in one run.

Generates a corpus of CT-like DICOM files (pydicom; 512x512 16-bit pixels, ~512 KiB each, 100
per directory as a PACS lays them out) and a few large files, then measures on the same disk:

  copy+fsync        read each file, write a copy, fsync it (the I/O limit)
  imgvault encrypt  in place, as `imgvaultctl file encrypt`: temp file, fsync, rename, one
                    directory fsync per directory; two RSA-4096 recipients (service, recovery)
                    and a batch key (one per run); with --jobs 1 (one file at a time, like the
                    copy) and --jobs N (default 4)
  imgvault decrypt  in place, as `imgvaultctl file decrypt --jobs N`: one RSA-4096 private-key
                    operation for the batch key, then AES key unwrap per file; and, for
                    comparison, files written without a batch key (format v1, or by OpenSSL):
                    one RSA-4096 operation per file
  openssl cms       `openssl cms -encrypt -aes-256-gcm` (OAEP-SHA-256) per file, to a new file
  AES-256-GCM       one core: the engine's loop (cryptography, 1 MiB and 16 KiB updates) vs
                    `openssl speed -evp aes-256-gcm -bytes 16384`

Targets: imgvault >= 0.8x copy+fsync (small and large), >= 5x openssl cms per file, AES-GCM
>= 70% of openssl speed. Page cache is warm for reads in every row alike. Example quick run:
  scripts/bench-filecrypt --small 200 --large 1 --large-size 256M
"""

import argparse
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imgvault.dicom.synthetic import SLICE_PIXELS, ct_slice
from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.keystore import self_signed_certificate
from imgvault.filecrypt.recipients import OAEP, Recipient, check_recipient
from imgvault.filecrypt.stream import Key
from imgvault.system.run import run

MIB = 1024 * 1024
PER_DIRECTORY = 100


def make_corpus(directory: Path, small: int, large: int, large_size: int) -> tuple[list, list]:
    pixels = os.urandom(SLICE_PIXELS)
    small_files = []
    for i in range(small):
        sub = directory / "small" / f"series{i // PER_DIRECTORY:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"ct{i:05d}.dcm"
        ct_slice(path, i, pixels)
        small_files.append(path)
    large_files = []
    block = os.urandom(MIB)
    for i in range(large):
        path = directory / "large" / f"big{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for _ in range(large_size // MIB):
                f.write(block)
        large_files.append(path)
    return small_files, large_files


def timed(files: list[Path], action: Callable[[Path], None]) -> float:
    os.sync()  # no row pays for the previous row's (or the corpus's) dirty pages
    start = time.monotonic()
    for path in files:
        action(path)
    return time.monotonic() - start


def copy_fsync(path: Path) -> None:
    with path.open("rb") as src, path.with_suffix(".copy").open("wb") as dst:
        shutil.copyfileobj(src, dst, stream.CHUNK)
        dst.flush()
        os.fsync(dst.fileno())


def batch(
    files: list[Path], action: Callable[[Path, set[str]], inplace.Outcome], jobs: int
) -> float:
    """As `imgvaultctl file encrypt/decrypt --jobs N` runs it."""
    os.sync()
    start = time.monotonic()
    for path, _, error in inplace.run_batch(files, action, jobs=jobs):
        if error is not None:
            raise SystemExit(f"{path}: {error}")
    return time.monotonic() - start


def openssl_cms(cert: Path) -> Callable[[Path], None]:
    def encrypt(path: Path) -> None:
        run(
            ["openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
             "-recip", str(cert), "-keyopt", "rsa_padding_mode:oaep",
             "-keyopt", "rsa_oaep_md:sha256", "-in", str(path),
             "-out", str(path.with_suffix(".cms"))],
            check=True,
        )  # fmt: skip

    return encrypt


def gcm_rate(chunk: int, seconds: float = 1.0) -> float:
    """Bytes per second of the engine's own AES-256-GCM loop on one core."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.GCM(os.urandom(12))).encryptor()
    buf, out = bytearray(chunk), bytearray(chunk + 15)
    done, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        for _ in range(64):
            encryptor.update_into(buf, out)
        done += 64 * chunk
    return done / (time.monotonic() - start)


def openssl_speed() -> float:
    out = run(["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", "1"],
              check=True).stdout  # fmt: skip
    match = re.search(r"AES-256-GCM\s+([\d.]+)k", out, re.IGNORECASE)
    if not match:
        raise SystemExit(f"cannot parse openssl speed output:\n{out}")
    return float(match.group(1)) * 1000


def rsa_private_rate(key: rsa.RSAPrivateKey, seconds: float = 1.0) -> float:
    """RSA-OAEP unwraps per second on one core: a decrypt needs one per file, whatever its size."""
    wrapped = key.public_key().encrypt(os.urandom(32), OAEP)
    count, start = 0, time.monotonic()
    while time.monotonic() - start < seconds:
        key.decrypt(wrapped, OAEP)
        count += 1
    return count / (time.monotonic() - start)


def size_arg(text: str) -> int:
    units = {"K": 1024, "M": MIB, "G": 1024 * MIB}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


def row(name: str, files: list[Path], seconds: float, base: float | None) -> list[str]:
    total = sum(p.stat().st_size for p in files) if files else 0
    rate = len(files) / seconds
    ratio = f"{base / seconds:.2f}x" if base else "1.00x"
    return [name, str(len(files)), f"{total / 1e6:.0f}", f"{seconds:.2f}", f"{rate:.1f}",
            f"{total / 1e6 / seconds:.0f}", ratio]  # fmt: skip


def measure(
    label: str,
    files: list[Path],
    *,
    sample: list[Path],
    keys: tuple[list[Recipient], rsa.RSAPrivateKey, Path],
    jobs: int,
    rows: list[list[str]],
) -> tuple[float, float, float, float]:
    """Add the rows of one file set; return the ratios the targets are about."""
    recipients, private_key, cert_file = keys
    copy = timed(files, copy_fsync)
    for p in files:
        p.with_suffix(".copy").unlink()

    def encrypt(batches: Batches | None) -> Callable[[Path, set[str]], inplace.Outcome]:
        return lambda p, d: inplace.encrypt_file(p, recipients, batches=batches, dirs_to_sync=d)

    def decrypt(files: list[Path]) -> float:
        key = Key(private_key, recipients[0].cert)  # a new command: nothing unwrapped yet
        return batch(files, lambda p, d: inplace.decrypt_file(p, key, dirs_to_sync=d), jobs)

    serial = batch(files, encrypt(Batches()), 1)  # one file at a time, like the copy
    decrypt(files)
    enc = batch(files, encrypt(Batches()), jobs)
    dec = decrypt(files)
    batch(files, encrypt(None), jobs)
    dec_rsa = decrypt(files)
    ossl = timed(sample, openssl_cms(cert_file)) * len(files) / len(sample)
    rows += [
        row(f"{label}: copy+fsync", files, copy, None),
        row(f"{label}: imgvault encrypt --jobs 1", files, serial, copy),
        row(f"{label}: imgvault encrypt --jobs {jobs}", files, enc, copy),
        row(f"{label}: imgvault decrypt --jobs {jobs}", files, dec, copy),
        row(f"{label}: ... without batch key", files, dec_rsa, copy),
        row(f"{label}: openssl cms -encrypt*", files, ossl, copy),
    ]
    return copy / serial, copy / enc, copy / dec, ossl / enc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=2000, help="CT slices (2000)")
    parser.add_argument("--large", type=int, default=3, help="large files (3)")
    parser.add_argument("--large-size", type=size_arg, default=1024 * MIB, help="1G")
    parser.add_argument(
        "--openssl-sample", type=int, default=200, help="small files through openssl cms (200)"
    )
    # On the disk (not a tmpfs /tmp), so the fsync rows measure the disk.
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/imgvault-bench"))  # noqa: S108
    parser.add_argument("--jobs", type=int, default=4, help="imgvault's --jobs (4)")
    parser.add_argument("--keep", action="store_true", help="keep the corpus afterwards")
    args = parser.parse_args()

    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    start = time.monotonic()
    small, large = make_corpus(args.dir, args.small, args.large, args.large_size)
    print(f"corpus: {len(small)} CT slices, {len(large)} x {args.large_size // MIB} MiB "
          f"({time.monotonic() - start:.1f} s to generate)")  # fmt: skip

    service = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    recovery = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    certs = [self_signed_certificate(k, n, 30) for k, n in ((service, "svc"), (recovery, "rec"))]
    recipients: list[Recipient] = [check_recipient(c, "bench") for c in certs]
    cert_file = args.dir / "svc.pem"
    cert_file.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))

    rows: list[list[str]] = []
    ratios = {}
    for label, files in (("small", small), ("large", large)):
        if files:
            sample = files[: args.openssl_sample] if label == "small" else files
            keys = (recipients, service, cert_file)
            ratios[label] = measure(
                label, files, sample=sample, keys=keys, jobs=args.jobs, rows=rows
            )

    ours_1m, ours_16k, theirs = gcm_rate(MIB), gcm_rate(16384), openssl_speed()
    headers = ["workload", "files", "MB", "seconds", "files/s", "MB/s", "speed vs copy+fsync"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print()
    for r in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
    print(f"* openssl cms: {min(args.openssl_sample, len(small))} small files and every large "
          "file run, time scaled to the whole set")  # fmt: skip
    print()
    print(f"AES-256-GCM one core: imgvault loop {ours_1m / 1e6:.0f} MB/s (1 MiB updates, as the "
          f"engine), {ours_16k / 1e6:.0f} MB/s (16 KiB); openssl speed {theirs / 1e6:.0f} MB/s "
          f"(16 KiB) -> {ours_1m / theirs:.0%} / {ours_16k / theirs:.0%}")  # fmt: skip
    print()
    print("targets:")
    for label, (serial_r, enc_r, dec_r, vs_ossl) in ratios.items():
        verdicts = [f"{name} {r:.2f}x ({'met' if r >= 0.8 else 'NOT met'})"
                    for name, r in (("encrypt", enc_r), ("decrypt", dec_r))]  # fmt: skip
        print(f"  {label}, >= 0.8x copy+fsync: {', '.join(verdicts)}; encrypt {vs_ossl:.1f}x "
              f"openssl cms (>= 5x: {'met' if vs_ossl >= 5 else 'NOT met'}); informative, "
              f"one file at a time (--jobs 1, no overlap of fsyncs): {serial_r:.2f}x")  # fmt: skip
    unwraps = rsa_private_rate(service)
    cores = os.cpu_count() or 1
    print(f"  without a batch key, decrypt needs one RSA-4096 private-key operation per file: "
          f"{unwraps:.0f}/s per core x {cores} cores = {unwraps * cores:.0f} files/s "
          "at most")  # fmt: skip
    print(f"  AES-GCM {ours_1m / theirs:.0%} of openssl speed (>= 70%: "
          f"{'met' if ours_1m / theirs >= 0.7 else 'NOT met'})")  # fmt: skip
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if not args.keep:
        shutil.rmtree(args.dir)


if __name__ == "__main__":
    main()
