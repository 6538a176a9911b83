"""Helpers of the de-identification tests: synthetic CT slices carrying injected PHI."""

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from imgvault.dicom.synthetic import ct_slice

# Every string injected as PHI; none may occur anywhere in an output file.
PHI = {
    "PatientName": "DOE^JOHNATHAN^PHI",
    "PatientID": "PHIID48151623",
    "PatientBirthDate": "19710203",
    "AccessionNumber": "PHIACC777",
    "InstitutionName": "PHI General Hospital",
    "ReferringPhysicianName": "REFERRER^PHIDOC",
    "PatientAddress": "42 PHI Street Springfield",
    "OperatorsName": "OPERATOR^PHIOP",
    "StationName": "PHISTATION9",
    "StudyDate": "20250317",
    "SeriesDate": "20250318",
    "ContentDate": "20250319",
    "StudyID": "PHISTUDY5",
}
NESTED_PHI = "NESTED^PHI^INSIDE"
DEEP_PHI = "Deep PHI Clinic"
PRIVATE_PHI = "PRIVATE-PHI-SECRET"
OVERLAY_PHI = "PHI overlay comment"
OVERLAY_BITS = b"PHIOVERLAYBITS!!"
CURVE_BITS = b"PHICURVEDATA!!!!"


def add_phi(path: Path, *, study: str, series: str, frame: str, referenced: str) -> None:
    """Inject PHI into the slice at `path`: table attributes, a kept sequence holding PHI two
    levels deep, private attributes (also a private sequence), overlay and curve groups."""
    ds = pydicom.dcmread(path)
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    inner = Dataset()
    inner.InstitutionName = DEEP_PHI
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = referenced
    item.PatientName = NESTED_PHI
    item.AnatomicRegionSequence = Sequence([inner])  # not in the table: kept, items cleaned
    ds.ReferencedImageSequence = Sequence([item])
    block = ds.private_block(0x0011, "PHI VENDOR", create=True)
    block.add_new(0x01, "LO", PRIVATE_PHI)
    private_item = Dataset()
    private_item.PatientName = PRIVATE_PHI
    block.add_new(0x02, "SQ", Sequence([private_item]))
    ds.add_new(0x60000010, "US", 4)  # Overlay Rows: kept
    ds.add_new(0x60003000, "OW", OVERLAY_BITS)
    ds.add_new(0x60024000, "LT", OVERLAY_PHI)  # a second overlay group: matched by mask
    ds.add_new(0x50003000, "OB", CURVE_BITS)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def phi_series(tmp_path: Path) -> list[Path]:
    """Two slices of one series (shared study, series, frame of reference), each referencing
    the other, with PHI injected."""
    source = tmp_path / "in"
    source.mkdir()
    paths = [source / "slice1.dcm", source / "slice2.dcm"]
    for number, path in enumerate(paths, 1):
        ct_slice(path, number)
    uids = [str(pydicom.dcmread(p).SOPInstanceUID) for p in paths]
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for path, other in zip(paths, reversed(uids), strict=True):
        add_phi(path, study=study, series=series, frame=frame, referenced=other)
    return paths
