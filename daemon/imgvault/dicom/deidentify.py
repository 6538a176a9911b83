"""De-identification of DICOM files for research exports: PS3.15 Annex E, Basic Application
Level Confidentiality Profile, without options (docs/dicom-deidentification.md).

One `Deidentifier` is one export: it holds a random key, in memory only, from which every new
UID is derived (HMAC-SHA256), so the same original UID gets the same new UID in every file of
the export (studies, series and references stay linked) while nobody holding the output can
test guessed original UIDs against it, and two exports of the same study cannot be linked.
The input is only ever read; each output is published whole or not at all.
"""

import errno
import hmac
import io
import os
import stat
import struct
import uuid
import warnings
from dataclasses import asdict, dataclass, field
from hashlib import sha256
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.sequence import Sequence

from imgvault import __version__
from imgvault.dicom.profile import Action, Profile, basic_profile
from imgvault.errors import ImgvaultError
from imgvault.filecrypt import inplace
from imgvault.filecrypt.errors import FilecryptError
from imgvault.secret import Secret
from imgvault.system.atomic import publish_new

# Modalities whose images commonly carry burned-in text (patient name on an ultrasound frame,
# a scanned or screen-captured document); an absent Burned In Annotation flag is refused there.
BURNED_IN_MODALITIES = frozenset({"US", "SC", "XA", "RF", "ES", "XC", "GM", "OT", "DOC"})
SECONDARY_CAPTURE_CLASSES = "1.2.840.10008.5.1.4.1.1.7"
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float
OUTPUT_MODE = 0o640
DIRECTORY_MODE = 0o750
METHOD = f"Basic Application Confidentiality Profile (imgvault {__version__})"
METHOD_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")

# What a parser of untrusted input raises inside pydicom for a damaged file (seen by flipping
# bytes of real files: tests/dicom, test_corrupted_bytes_are_clear_errors).
_PARSE_ERRORS = (
    BytesLengthException,
    AttributeError,  # e.g. file meta without a Transfer Syntax UID
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    NotImplementedError,
    OverflowError,
    struct.error,
)

_CORRUPT_HINT = "the file is damaged: export it again from the PACS"
_DUMMY_TEXT = "ANONYMOUS"
_DUMMIES: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    **dict.fromkeys(("AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"), _DUMMY_TEXT),
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "AT"), 0),
    **dict.fromkeys(("OB", "OW", "OF", "OD", "OL", "OV", "UN"), bytes(8)),
}


class DicomError(ImgvaultError):
    """Base of every de-identification error; the file it names produced no output."""


class NotDicomError(DicomError):
    """Not a DICOM Part 10 file (no 128-byte preamble followed by DICM)."""


class CorruptDicomError(DicomError):
    """A DICOM file that is truncated or whose structure cannot be parsed."""


class UnsafeInputError(DicomError):
    """A symlink, FIFO, device or directory where a regular file was expected."""


class EncryptedInputError(DicomError):
    """An imgvault-encrypted file: its DICOM content is not readable without the key."""


class OutputExistsError(DicomError):
    """The output name exists already; imgvault never overwrites."""


class BurnedInAnnotationError(DicomError):
    """The pixels may show patient data as text, which the Basic Profile does not clean."""


@dataclass(frozen=True)
class Change:
    """One element changed: where (tags, with item numbers inside sequences), its name and
    what was done (removed, emptied, dummied, uid-replaced, private-removed)."""

    where: str
    name: str
    action: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


_COUNTERS = {
    "removed": "removed",
    "emptied": "emptied",
    "dummied": "dummied",
    "uid-replaced": "uids_replaced",
    "private-removed": "private_removed",
}


@dataclass
class Counts:
    removed: int = 0
    emptied: int = 0
    dummied: int = 0
    uids_replaced: int = 0
    private_removed: int = 0

    def add(self, changes: list[Change]) -> None:
        for change in changes:
            name = _COUNTERS[change.action]
            setattr(self, name, getattr(self, name) + 1)


@dataclass(frozen=True)
class Result:
    input: Path
    output: Path
    counts: Counts
    burned_in_accepted: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "status": "deidentified",
            "counts": asdict(self.counts),
            "burned_in_accepted": self.burned_in_accepted,
        }


@dataclass
class Deidentifier:
    """The state of one export: the UID key and the UIDs mapped so far."""

    profile: Profile = field(default_factory=basic_profile)
    key: Secret = field(default_factory=lambda: Secret(os.urandom(32)), repr=False)
    _uids: dict[str, str] = field(default_factory=dict, repr=False)

    def uid(self, original: str) -> str:
        """`2.25.` + a 128-bit UUID (version 4 layout, X.667) made of HMAC-SHA256(key, UID):
        at most 44 characters, the same for the same original within this export."""
        original = original.strip("\0 ")
        new = self._uids.get(original)
        if new is None:
            if not self.key:
                raise RuntimeError("this export is closed: its key is wiped")
            mac = hmac.new(self.key.reveal(), original.encode("ascii", "replace"), sha256)
            new = f"2.25.{uuid.UUID(bytes=mac.digest()[:16], version=4).int}"
            self._uids[original] = new
        return new

    def close(self) -> None:
        self.key.wipe()
        self._uids.clear()

    def clean(self, ds: Dataset, changes: list[Change], where: str = "") -> None:
        """Apply the profile to every element of `ds`, recursively into sequence items, and
        note each change (`where` locates `ds` inside the file's sequences)."""
        for elem in list(ds):
            at = f"{where}{elem.tag}"
            done = self._apply(ds, elem, changes, at)
            if done:
                changes.append(Change(at, elem.keyword or elem.name, done))

    def _apply(self, ds: Dataset, elem: DataElement, changes: list[Change], at: str) -> str:
        """What was done to `elem` ("" for nothing), after doing it."""
        if elem.tag.is_private:
            del ds[elem.tag]
            return "private-removed"
        action = self.profile.action(int(elem.tag))
        if action is Action.REMOVE or (elem.tag.element == 0 and elem.tag.group != 0x0002):
            del ds[elem.tag]  # a group length would be wrong once elements are removed
            return "removed"
        if action is Action.EMPTY or (action is Action.DUMMY and elem.VR == "SQ"):
            # No dummy sequence fits every IOD; an empty one is the safe choice.
            elem.value = Sequence() if elem.VR == "SQ" else None
            return "emptied"
        if action is Action.DUMMY:
            vr = elem.VR.split(" or ")[0]  # an ambiguous VR ("US or SS"): 0 fits any
            elem.value = self.uid(str(elem.value or "")) if vr == "UI" else _DUMMIES.get(vr)
            return "dummied"
        if action is Action.UID and elem.VR != "SQ" and elem.VM > 0:
            values = elem.value if elem.VM > 1 else [elem.value]
            new = [self.uid(str(v)) for v in values]
            elem.value = new if elem.VM > 1 else new[0]
            return "uid-replaced"
        if elem.VR == "SQ":  # kept, unlisted, or U on a sequence: clean its items
            for number, item in enumerate(elem.value):
                self.clean(item, changes, f"{at}[{number}].")
        return ""

    def stamp(self, ds: Dataset) -> None:
        """Record the de-identification (PS3.15 E.1.1) and rebuild the file meta information
        from the cleaned dataset, so that no AE title or original UID survives there."""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = METHOD_CODE
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        ds.file_meta = meta
        ds.preamble = bytes(128)  # the original preamble may hold anything (TIFF headers)


def _open_input(path: Path) -> bytes:
    """The bytes of a regular file, never following a symlink or blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeInputError(
                f"{path}: is a symbolic link; refusing to follow it",
                "give the path of the file it points to",
            ) from None
        raise DicomError(f"{path}: cannot open: {error.strerror}", "check the path") from None
    with open(fd, "rb") as f:  # noqa: PTH123  # a descriptor, not a path
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeInputError(
                f"{path}: not a regular file (FIFO, device, socket or directory); refusing it",
                "give DICOM files or directories holding them",
            )
        try:
            encrypted = inplace.is_encrypted(f, st.st_size, str(path))
        except FilecryptError:
            encrypted = True  # starts like CMS AuthEnvelopedData but is damaged
        if encrypted:
            raise EncryptedInputError(
                f"{path}: is an imgvault-encrypted file, not readable DICOM",
                f"decrypt a copy first: imgvaultctl file decrypt {path} --key KEY -o PLAIN.dcm",
            )
        f.seek(0)
        return f.read()


def read_dataset(path: Path) -> Dataset:
    """Parse `path` completely, refusing anything that is not an intact DICOM Part 10 file."""
    data = _open_input(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError:
        raise NotDicomError(
            f"{path}: not a DICOM file (no 'DICM' after the 128-byte preamble)",
            "give DICOM Part 10 files; a bare dataset without preamble can be wrapped with "
            "dcmconv +F (dcmtk) first",
        ) from None
    except _PARSE_ERRORS as error:
        raise _corrupt(path, error) from None
    if any("End of file" in str(w.message) for w in caught) or not _complete(ds, len(data)):
        raise CorruptDicomError(f"{path}: truncated DICOM file", _CORRUPT_HINT)
    return ds


def _corrupt(path: Path, error: Exception) -> CorruptDicomError:
    """The error names only the exception type: pydicom's text may quote a value (PHI)."""
    return CorruptDicomError(f"{path}: corrupt DICOM ({type(error).__name__})", _CORRUPT_HINT)


def _complete(ds: Dataset, size: int) -> bool:
    """False when a value is shorter than its declared length or bytes after the last element
    were silently dropped: pydicom reads a truncated file without an error."""
    tags = list(ds.keys())
    if not tags:
        return False
    for tag in tags:
        raw = ds.get_item(tag)
        if (
            isinstance(raw, RawDataElement)
            and raw.length != 0xFFFFFFFF
            and raw.value is not None
            and len(raw.value) < raw.length
        ):
            return False
    last = ds.get_item(tags[-1])
    if isinstance(last, RawDataElement) and last.length != 0xFFFFFFFF:
        return last.value_tell + last.length >= size
    return True


def burned_in_problem(ds: Dataset) -> str | None:
    """Why the pixels may identify the patient (burned-in text, or a recognisable face as the
    file itself declares), or None when they should not."""
    if not any(tag in ds for tag in PIXEL_TAGS):
        return None
    if str(ds.get("RecognizableVisualFeatures", "")).strip().upper() == "YES":
        return "Recognizable Visual Features (0028,0302) is YES"
    flag = str(ds.get("BurnedInAnnotation", "")).strip().upper()
    if flag == "NO":
        return None
    if flag == "YES":
        return "Burned In Annotation (0028,0301) is YES"
    modality = str(ds.get("Modality", ""))
    capture = str(ds.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE_CLASSES)
    if modality in BURNED_IN_MODALITIES or capture:
        state = f"is {flag!r}" if flag else "is absent"
        what = "a secondary capture" if capture else f"modality {modality}"
        return f"Burned In Annotation (0028,0301) {state} for {what}, which often shows text"
    return None


def prepare(
    path: Path, deidentifier: Deidentifier, *, accept_burned_in: bool = False
) -> tuple[Dataset, list[Change], str | None]:
    """Read and de-identify `path` in memory: the dataset, its changes and the burned-in
    problem that was accepted (None if there was none)."""
    ds = read_dataset(path)
    changes: list[Change] = []
    with warnings.catch_warnings():
        # pydicom warns about odd values while converting them, quoting the value (PHI).
        warnings.simplefilter("ignore")
        try:
            problem = burned_in_problem(ds)
            if problem and not accept_burned_in:
                raise BurnedInAnnotationError(
                    f"{path}: {problem}; refusing it (pixel data is not cleaned)",
                    "leave it out of the export, or check the pixels yourself and give "
                    "--accept-burned-in",
                )
            if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
                raise CorruptDicomError(
                    f"{path}: has no SOP Class/Instance UID", "export only DICOM instances"
                )
            deidentifier.clean(ds, changes)
            deidentifier.stamp(ds)
        except _PARSE_ERRORS as error:
            raise _corrupt(path, error) from None
    return ds, changes, problem


def deidentify_file(
    path: Path, outdir: Path, deidentifier: Deidentifier, *, accept_burned_in: bool = False
) -> Result:
    """De-identify `path` into `outdir`/STUDY/SERIES/INSTANCE.dcm (new UIDs: no file or
    directory name carries the original's), mode 0640; raises DicomError, writing nothing."""
    ds, changes, problem = prepare(path, deidentifier, accept_burned_in=accept_burned_in)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds.save_as(buffer, enforce_file_format=True)
        except _PARSE_ERRORS as error:
            raise _corrupt(path, error) from None
    relative = Path(
        str(ds.get("StudyInstanceUID", "no-study")),
        str(ds.get("SeriesInstanceUID", "no-series")),
        f"{ds.SOPInstanceUID}.dcm",
    )
    publish(outdir, relative, buffer.getvalue())
    counts = Counts()
    counts.add(changes)
    return Result(path, outdir / relative, counts, problem is not None)


def publish(outdir: Path, relative: Path, data: bytes) -> None:
    """Create `outdir`/`relative` atomically; its directories are created below `outdir`
    without following any symlink."""
    try:
        fd = os.open(outdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise DicomError(
            f"{outdir}: cannot open the output directory: {error.strerror}",
            "give an existing, writable directory with -o",
        ) from None
    try:
        for part in relative.parent.parts:
            try:
                os.mkdir(part, DIRECTORY_MODE, dir_fd=fd)
                os.fsync(fd)
            except FileExistsError:
                pass
            sub = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = sub
        publish_new(fd, relative.name, data, mode=OUTPUT_MODE)
    except FileExistsError:
        raise OutputExistsError(
            f"{outdir / relative}: already exists; not overwritten",
            "the same instance was given twice; give each file once, or a new -o directory",
        ) from None
    except OSError as error:
        raise DicomError(
            f"{outdir / relative}: cannot write: {error.strerror}",
            "check free space, permissions and that no symlink lies below the output directory",
        ) from None
    finally:
        os.close(fd)
