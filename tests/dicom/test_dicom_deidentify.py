"""De-identification on real DICOM: pydicom's test files and synthetic CT slices with PHI."""

import hashlib
import hmac
import json
import os
import random
import re
import shutil
import stat
import uuid
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from dicom_phi import (
    CURVE_BITS,
    DEEP_PHI,
    NESTED_PHI,
    OVERLAY_BITS,
    OVERLAY_PHI,
    PHI,
    PRIVATE_PHI,
)
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from imgvault.cli import main as cli_main
from imgvault.dicom import deidentify as de
from imgvault.dicom.profile import PRIVATE_ROW, RESOLVED, Action, basic_profile, load_document
from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import stream
from imgvault.filecrypt.keystore import self_signed_certificate
from imgvault.filecrypt.recipients import check_recipient
from imgvault.secret import Secret

DUMMIES = {"ANONYMOUS", "19000101", "000000", "19000101000000", "000Y", "0", "0.0", str(bytes(8))}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def walk(ds: Dataset) -> list[pydicom.DataElement]:
    """Every element of `ds`, also those inside sequence items at any depth."""
    found = []
    for elem in ds:
        found.append(elem)
        if elem.VR == "SQ":
            for item in elem.value:
                found.extend(walk(item))
    return found


def check_profile_applied(ds: Dataset) -> None:
    """The invariants of any de-identified dataset, whatever its IOD."""
    profile = basic_profile()
    for elem in walk(ds):
        assert not elem.tag.is_private, elem
        action = profile.action(int(elem.tag))
        assert action is not Action.REMOVE, elem
        if action is Action.EMPTY or (action is Action.DUMMY and elem.VR == "SQ"):
            assert elem.is_empty, elem
        elif action is Action.DUMMY:
            assert str(elem.value) in DUMMIES or str(elem.value).startswith("2.25."), elem
        elif action is Action.UID and elem.VR == "UI" and not elem.is_empty:
            values = elem.value if elem.VM > 1 else [elem.value]
            for value in values:
                assert value.startswith("2.25.") and len(value) <= 64, elem
                assert pydicom.uid.UID(value).is_valid, elem
    assert ds.PatientIdentityRemoved == "YES"
    assert "Basic Application Confidentiality Profile" in ds.DeidentificationMethod
    assert len(ds.DeidentificationMethod) <= 64
    [code] = ds.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPClassUID == ds.SOPClassUID
    assert "SourceApplicationEntityTitle" not in ds.file_meta


# --- the vendored table -------------------------------------------------------------------


def test_vendored_table_is_complete_and_consistent() -> None:
    """/work/shared is not in CI: the source is pinned by checksum and commit instead."""
    document = load_document()
    assert re.fullmatch(r"[0-9a-f]{64}", str(document["source_sha256"]))
    assert document["commit"] == "7f4749d" and "innolitics" in str(document["source"])
    rows = document["rows"]
    assert isinstance(rows, list) and len(rows) == 621
    assert all(code in RESOLVED for _, _, code in rows)
    assert len({tag for tag, _, _ in rows}) == 621
    assert [PRIVATE_ROW, "Private Attributes", "X"] in rows
    profile = basic_profile()
    assert profile.rows == 621 and len(profile.exact) + len(profile.masked) == 620


def test_wildcard_rows_match_by_mask() -> None:
    profile = basic_profile()
    assert profile.action(0x60003000) is Action.REMOVE  # Overlay Data, group 6000
    assert profile.action(0x601E4000) is Action.REMOVE  # Overlay Comments, group 601E
    assert profile.action(0x50101234) is Action.REMOVE  # anything in curve group 5010
    assert profile.action(0x60020010) is None  # Overlay Rows: not in the table, kept
    assert profile.action(0x00100010) is Action.EMPTY  # Patient's Name
    assert profile.action(0x00080080) is Action.DUMMY  # Institution Name: X/Z/D -> D
    assert profile.action(0x00081140) is Action.UID  # Referenced Image Sequence: X/Z/U*


# --- synthetic slices with injected PHI ---------------------------------------------------


def test_phi_series_is_deidentified(phi_series: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    before = [sha(p) for p in phi_series]
    originals = [pydicom.dcmread(p) for p in phi_series]
    deidentifier = de.Deidentifier()
    results = [de.deidentify_file(p, out, deidentifier) for p in phi_series]
    assert [sha(p) for p in phi_series] == before  # inputs never modified
    outputs = [pydicom.dcmread(r.output) for r in results]
    forbidden = [*PHI.values(), NESTED_PHI, DEEP_PHI, PRIVATE_PHI, OVERLAY_PHI, "PHI VENDOR"]
    for original, result, ds in zip(originals, results, outputs, strict=True):
        raw = result.output.read_bytes()
        for text in forbidden:
            assert text.encode() not in raw, text
        for blob in (OVERLAY_BITS, CURVE_BITS):
            assert blob not in raw
        for uid in (original.StudyInstanceUID, original.SeriesInstanceUID, original.SOPInstanceUID):
            assert uid.encode() not in raw
        assert uid.encode() not in str(result.output).encode()
        check_profile_applied(ds)
        assert ds.PixelData == original.PixelData  # byte for byte
        assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert ds.PatientName == "" and ds.AccessionNumber == "" and ds.PatientBirthDate == ""
        assert ds.PatientID == "ANONYMOUS" and ds.InstitutionName == "ANONYMOUS"
        assert ds.ContentDate == "19000101" and ds.StationName == "ANONYMOUS"
        assert "PatientAddress" not in ds and 0x60003000 not in ds and 0x50003000 not in ds
        assert ds[0x60000010].value == 4  # overlay rows are no PHI: kept
        item = ds.ReferencedImageSequence[0]
        assert item.PatientName == "" and item.AnatomicRegionSequence[0].InstitutionName == (
            "ANONYMOUS"
        )
        assert result.output == (
            out / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
        )
        assert stat.S_IMODE(result.output.stat().st_mode) == 0o640
        assert result.counts.private_removed >= 3 and result.counts.uids_replaced >= 5
        assert not [p.name for p in result.output.parent.iterdir() if p.suffix != ".dcm"]
    first, second = outputs
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert first[keyword].value == second[keyword].value  # the series stays one series
    assert first.SOPInstanceUID != second.SOPInstanceUID
    # Each slice referenced the other: the references follow the new UIDs.
    assert first.ReferencedImageSequence[0].ReferencedSOPInstanceUID == second.SOPInstanceUID
    assert second.ReferencedImageSequence[0].ReferencedSOPInstanceUID == first.SOPInstanceUID


def test_two_exports_never_share_uids(phi_series: list[Path], tmp_path: Path) -> None:
    a = de.deidentify_file(phi_series[0], tmp_path, de.Deidentifier())
    b = de.deidentify_file(phi_series[0], tmp_path, de.Deidentifier())
    ua, ub = pydicom.dcmread(a.output), pydicom.dcmread(b.output)
    assert ua.StudyInstanceUID != ub.StudyInstanceUID and ua.SOPInstanceUID != ub.SOPInstanceUID
    assert ua.PixelData == ub.PixelData


def test_uid_vector_is_keyed_hmac() -> None:
    """A test vector: the new UID is the keyed HMAC, not a hash anyone can recompute."""
    key = bytes(range(32))
    deidentifier = de.Deidentifier(key=Secret(key))
    original = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    mac = hmac.new(key, original.encode(), hashlib.sha256).digest()
    expected = f"2.25.{uuid.UUID(bytes=mac[:16], version=4).int}"
    assert deidentifier.uid(original) == expected == deidentifier.uid(original + "\0")
    unkeyed = hashlib.sha256(original.encode()).digest()
    assert expected != f"2.25.{uuid.UUID(bytes=unkeyed[:16], version=4).int}"
    assert de.Deidentifier().uid(original) != expected
    assert len(expected) <= 44
    deidentifier.close()
    assert len(deidentifier.key) == 0
    with pytest.raises(RuntimeError):
        deidentifier.uid("1.2.3")  # never an HMAC with an empty key


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "rtplan.dcm",
        "test-SR.dcm",
        "waveform_ecg.dcm",
        "examples_overlay.dcm",
    ],
)
def test_pydicom_test_files(name: str, tmp_path: Path) -> None:
    source = Path(get_testdata_file(name))
    before = sha(source)
    original = pydicom.dcmread(source)
    result = de.deidentify_file(source, tmp_path, de.Deidentifier())
    ds = pydicom.dcmread(result.output)
    check_profile_applied(ds)
    assert sha(source) == before
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    if "PixelData" in original:
        assert ds.PixelData == original.PixelData
    if "PatientName" in original and original.PatientName:
        assert str(original.PatientName).encode() not in result.output.read_bytes()
    if name == "test-SR.dcm":  # the report text lives in the Content Sequence (D): emptied
        assert len(ds.ContentSequence) == 0 and result.counts.emptied > 0


def test_private_tags_removed_from_real_file(tmp_path: Path) -> None:
    source = Path(get_testdata_file("CT_small.dcm"))
    assert any(e.tag.is_private for e in pydicom.dcmread(source))
    result = de.deidentify_file(source, tmp_path, de.Deidentifier())
    assert result.counts.private_removed > 0
    assert not any(e.tag.is_private for e in walk(pydicom.dcmread(result.output)))


# --- burned-in annotation -----------------------------------------------------------------


def _with(path: Path, target: Path, **attributes: str) -> Path:
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(target, enforce_file_format=True)
    return target


@pytest.mark.parametrize(
    ("attributes", "refused"),
    [
        ({"BurnedInAnnotation": "YES"}, True),
        ({"BurnedInAnnotation": "NO", "RecognizableVisualFeatures": "YES"}, True),  # a face
        ({"Modality": "US"}, True),  # flag absent on ultrasound
        ({"Modality": "US", "BurnedInAnnotation": "NO"}, False),
        ({}, False),  # CT with no flag: CT images carry no burned-in text
    ],
)
def test_burned_in_policy(
    phi_series: list[Path], tmp_path: Path, attributes: dict[str, str], refused: bool
) -> None:
    source = _with(phi_series[0], tmp_path / "x.dcm", **attributes)
    out = tmp_path / "out"
    out.mkdir()
    if refused:
        with pytest.raises(de.BurnedInAnnotationError) as info:
            de.deidentify_file(source, out, de.Deidentifier())
        assert "--accept-burned-in" in info.value.hint
        assert not list(out.iterdir())
        result = de.deidentify_file(source, out, de.Deidentifier(), accept_burned_in=True)
        assert result.burned_in_accepted and result.to_json()["burned_in_accepted"] is True
    else:
        assert not de.deidentify_file(source, out, de.Deidentifier()).burned_in_accepted


# --- bad inputs: a clear error, no output, input untouched ----------------------------------


def _encrypted(path: Path, target: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    recipient = check_recipient(self_signed_certificate(key, "t", 30), "t")
    info = fmt.FileInfo(size=path.stat().st_size, mode=0o640, uid=0, gid=0, mtime_ns=0)
    with path.open("rb") as src, target.open("wb") as dst:
        stream.encrypt(src, dst, info, [recipient], None)
    return target


def _truncated(path: Path, target: Path, keep: int) -> Path:
    data = path.read_bytes()
    target.write_bytes(data[: keep if keep > 0 else len(data) + keep])
    return target


BAD_INPUTS = {
    "text": (de.NotDicomError, lambda s, t: t.write_text("name,birth\nDOE,1971\n") and t),
    "no-preamble": (
        de.NotDicomError,
        lambda s, t: shutil.copy(get_testdata_file("no_meta.dcm"), t) and t,
    ),
    "empty": (de.NotDicomError, lambda s, t: t.write_bytes(b"") or t),
    "truncated-pixels": (de.CorruptDicomError, lambda s, t: _truncated(s, t, -1000)),
    "truncated-header": (de.CorruptDicomError, lambda s, t: _truncated(s, t, 300)),
    "truncated-mid-element": (de.CorruptDicomError, lambda s, t: _truncated(s, t, 700)),
    "truncated-sequence": (
        de.CorruptDicomError,
        lambda s, t: _truncated(Path(get_testdata_file("MR_truncated.dcm")), t, 10**9),
    ),
    "symlink": (de.UnsafeInputError, lambda s, t: t.symlink_to(s) or t),
    "fifo": (de.UnsafeInputError, lambda s, t: os.mkfifo(t) or t),
    "device": (de.UnsafeInputError, lambda s, t: Path("/dev/null")),
    "encrypted": (de.EncryptedInputError, _encrypted),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_is_a_clear_error_and_writes_nothing(
    kind: str, phi_series: list[Path], tmp_path: Path
) -> None:
    error_type, make = BAD_INPUTS[kind]
    bad = make(phi_series[0], tmp_path / f"{kind}.dcm")
    before = sha(phi_series[0])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(error_type) as info:
        de.deidentify_file(bad, out, de.Deidentifier())
    assert str(bad) in info.value.message and info.value.hint
    assert "\n" not in info.value.message
    assert list(out.iterdir()) == []
    assert sha(phi_series[0]) == before
    if kind == "encrypted":
        assert "imgvaultctl file decrypt" in info.value.hint


def test_existing_output_is_never_overwritten(phi_series: list[Path], tmp_path: Path) -> None:
    deidentifier = de.Deidentifier()
    first = de.deidentify_file(phi_series[0], tmp_path, deidentifier)
    kept = sha(first.output)
    with pytest.raises(de.OutputExistsError) as info:
        de.deidentify_file(phi_series[0], tmp_path, deidentifier)
    assert "not overwritten" in info.value.message
    assert sha(first.output) == kept
    assert [p.name for p in first.output.parent.iterdir()] == [first.output.name]  # no temp


def test_symlink_below_the_output_directory_is_not_followed(
    phi_series: list[Path], tmp_path: Path
) -> None:
    deidentifier = de.Deidentifier()
    ds = pydicom.dcmread(phi_series[0])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / deidentifier.uid(ds.StudyInstanceUID)).symlink_to(elsewhere)
    with pytest.raises(de.DicomError) as info:
        de.deidentify_file(phi_series[0], out, deidentifier)
    assert "symlink" in info.value.hint
    assert list(elsewhere.iterdir()) == []


# --- the command ----------------------------------------------------------------------------


def test_cli_walks_directories_reports_and_fails_on_bad_files(
    phi_series: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = phi_series[0].parent
    (source / "notes.txt").write_text("DOE^JOHN\n")
    (source / "link.dcm").symlink_to(phi_series[0])
    out = tmp_path / "export"
    code = cli_main.main(["dicom", "deidentify", str(source), "-o", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (report["deidentified"], report["failed"]) == (2, 2)
    by_input = {Path(f["input"]).name: f for f in report["files"]}
    assert by_input["notes.txt"]["status"] == "failed" and by_input["notes.txt"]["hint"]
    assert "symbolic link" in by_input["link.dcm"]["error"]
    assert by_input["slice1.dcm"]["status"] == "deidentified"
    assert by_input["slice1.dcm"]["counts"]["private_removed"] >= 3
    assert len(list(out.rglob("*.dcm"))) == 2
    code = cli_main.main(["dicom", "deidentify", str(phi_series[1]), "-o", str(tmp_path / "b")])
    captured = capsys.readouterr()
    assert code == 0 and "1 de-identified" in captured.out and "0 failed" in captured.out


def test_cli_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["dicom", "deidentify", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--accept-burned-in" in text and "NOT implemented" in text


@pytest.mark.filterwarnings("ignore:Expected explicit VR")  # pydicom on SC_rgb_jpeg.dcm itself
@pytest.mark.parametrize("name", ["image_dfl.dcm", "JPEG2000.dcm", "SC_rgb_jpeg.dcm"])
def test_deflated_and_encapsulated_files_keep_their_encoding(name: str, tmp_path: Path) -> None:
    """Secondary captures: refused for burned-in text unless accepted; then exported with the
    same transfer syntax and the compressed pixel data byte for byte."""
    source = Path(get_testdata_file(name))
    with pytest.raises(de.BurnedInAnnotationError):
        de.deidentify_file(source, tmp_path, de.Deidentifier())
    result = de.deidentify_file(source, tmp_path, de.Deidentifier(), accept_burned_in=True)
    original, ds = pydicom.dcmread(source), pydicom.dcmread(result.output)
    check_profile_applied(ds)
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.PixelData == original.PixelData


def test_cli_inspect_is_a_check_mode(
    phi_series: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = phi_series[0]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    digest = sha(source)
    assert cli_main.main(["dicom", "inspect", str(source), "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    actions = {(c["where"], c["action"]) for c in report["changes"]}
    assert ("(0010,0010)", "emptied") in actions and ("(0008,0080)", "dummied") in actions
    assert ("(0008,1140)[0].(0010,0010)", "emptied") in actions  # inside a sequence item
    assert ("(0008,1140)[0].(0008,1155)", "uid-replaced") in actions
    assert ("(0011,1001)", "private-removed") in actions
    assert ("(6000,3000)", "removed") in actions and ("(5000,3000)", "removed") in actions
    assert report["burned_in_refusal"] is None and report["counts"]["private_removed"] >= 3
    for text in (*PHI.values(), NESTED_PHI, PRIVATE_PHI):
        assert text not in out  # values are never shown
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and sha(source) == digest
    us = _with(source, tmp_path / "us.dcm", Modality="US")
    assert cli_main.main(["dicom", "inspect", str(us)]) == 0
    assert "refused unless --accept-burned-in" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom re-reading damaged kept values
def test_corrupted_bytes_are_clear_errors(tmp_path: Path) -> None:
    """Random damage anywhere in the first 2 KiB of a real file: each run is exported or
    refused as a DicomError with a hint, never an uncaught exception or a partial file."""
    original = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    rng = random.Random(1)  # noqa: S311  # reproducible damage, not a secret
    exported = 0
    for number in range(200):
        damaged = bytearray(original)
        offset = rng.randrange(132, 2000)
        damaged[offset : offset + 16] = rng.randbytes(16)
        path = tmp_path / f"damaged{number}.dcm"
        path.write_bytes(bytes(damaged))
        try:
            result = de.deidentify_file(path, out, de.Deidentifier())
        except de.DicomError as error:
            assert error.hint
            continue
        exported += 1
        check_profile_applied(pydicom.dcmread(result.output))
    assert len(list(out.rglob("*.dcm"))) == exported
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


_PHI_VALUES = {
    "DA": "20200101",
    "TM": "101010",
    "DT": "20200101101010",
    "AS": "042Y",
    "DS": "7",
    "IS": "7",
    "UI": "1.2.826.0.1.3680043.2.1143.777",
    **dict.fromkeys(("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"), 7),
    **dict.fromkeys(("OB", "OW", "UN"), b"PHIBYTES"),
}


def test_every_row_of_the_table_is_applied(phi_series: list[Path], tmp_path: Path) -> None:
    """One file holding every exact-tag attribute of Table E.1-1 (groups 0000 and 0002
    excepted: they cannot be in a dataset), each with a recognisable value."""
    ds = pydicom.dcmread(phi_series[0])
    expected: dict[int, Action] = {}
    for tag, action in basic_profile().exact.items():
        if tag >> 16 in (0x0000, 0x0002) or tag in (0x00080016, 0x00080018):
            continue  # not in a dataset; SOP Class/Instance are the file's own
        vr = pydicom.datadict.dictionary_VR(tag).split(" or ")[0]
        if vr == "SQ":
            item = Dataset()
            item.PatientName = "PHI^IN^ITEM"
            value: object = [item]
        else:
            value = _PHI_VALUES.get(vr, "PHITEXT")
        ds.add_new(tag, vr, value)
        expected[tag] = action
    source = tmp_path / "every.dcm"
    ds.save_as(source, enforce_file_format=True)
    result = de.deidentify_file(source, tmp_path, de.Deidentifier())
    raw = result.output.read_bytes()
    for text in (b"PHITEXT", b"PHIBYTES", b"PHI^IN^ITEM", b"20200101", b"042Y"):
        assert text not in raw
    assert _PHI_VALUES["UI"].encode() not in raw
    out = pydicom.dcmread(result.output)
    check_profile_applied(out)
    for tag, action in expected.items():
        if action is Action.REMOVE:
            assert tag not in out, hex(tag)
        elif action is Action.KEEP:
            assert out[tag].value == ds[tag].value, hex(tag)
        else:
            assert tag in out, hex(tag)
    assert len(expected) > 550
