"""DICOM: de-identification for research exports, and synthetic images for demos and benchmarks."""
