"""Synthetic CT slices: the size and layout of real ones, and no patient data at all.

Demos and benchmarks need files that look like what a PACS stores (a 512x512 16-bit CT slice
is about 512 KiB) without ever touching real PHI.
"""

import os
from pathlib import Path

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SLICE_PIXELS = 512 * 512 * 2
SYNTHETIC_PATIENT = "SYNTHETIC^DEMO"


def ct_slice(path: Path, number: int, pixels: bytes | None = None) -> None:
    """Write CT slice `number` to `path`. `pixels` (SLICE_PIXELS bytes) lets a caller making
    many slices generate random pixel data once; each slice still differs in its first bytes."""
    pixels = pixels if pixels is not None else os.urandom(SLICE_PIXELS)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.PatientName = SYNTHETIC_PATIENT
    ds.PatientID = "SYNTH0001"
    ds.InstanceNumber = number
    ds.Rows = ds.Columns = 512
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = number.to_bytes(4, "little") + pixels[4:]
    ds.save_as(path, enforce_file_format=True)
