"""DICOM: synthetic images for demos and benchmarks (de-identification will live here too)."""
