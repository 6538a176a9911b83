"""`imgvaultctl dicom deidentify`: research exports without patient-identifying data."""

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.output import format_table, print_json
from imgvault.cli.progress import Progress
from imgvault.dicom.deidentify import (
    DIRECTORY_MODE,
    Counts,
    Deidentifier,
    DicomError,
    Result,
    deidentify_file,
    prepare,
)

HELP = """\
De-identify DICOM files for a research export, following DICOM PS3.15 Annex E, the Basic
Application Level Confidentiality Profile (Table E.1-1, vendored with its source), without
options: Retain Longitudinal Dates, Retain Safe Private, Clean Descriptors and the other
options are NOT implemented, and pixel data is never cleaned. See docs/dicom-deidentification.md.

Per attribute: X removed, Z emptied, D replaced by a dummy (dates 19000101, names ANONYMOUS,
numbers 0; a sequence is emptied), U replaced by a new UID; conditional codes take the choice
that keeps the file valid (X/Z -> Z, X/D, Z/D, X/Z/D -> D, X/Z/U* -> U). All private
attributes are removed. New UIDs are 2.25.<HMAC-SHA256 of the original under a random key held
in memory for this run only>: files of one run keep their study/series links, two runs never
share UIDs. Patient Identity Removed (0012,0062) = YES and the method (0012,0063/0064) are added.

Outputs are OUTDIR/NEW-STUDY-UID/NEW-SERIES-UID/NEW-SOP-INSTANCE-UID.dcm (no original name
or UID survives in a path), mode 0640, written to a temporary file, fsynced and linked into
place: never overwritten, never partial. Inputs are only read. Directories are walked;
symlinks, FIFOs and devices are refused. Images whose Burned In Annotation (0028,0301) is YES,
or absent for US, SC, XA, RF, ES, XC, GM, OT, DOC and secondary captures, or whose Recognizable
Visual Features (0028,0302) is YES, are refused unless --accept-burned-in is given (the
report then says so per file). Failed files are reported and the others still exported; the
exit status is then 1.

`imgvaultctl dicom inspect FILE` shows what would change in one file and writes nothing.

examples:
  imgvaultctl dicom inspect /srv/pacs/export/study42/ct1.dcm
  imgvaultctl dicom deidentify /srv/pacs/export/study42 -o /srv/research/trial7
  imgvaultctl dicom deidentify a.dcm b.dcm -o /srv/research/trial7 --json
  imgvaultctl dicom deidentify /srv/pacs/us -o /srv/research/us --accept-burned-in
"""


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    """Files named, and everything under directories named (symlinks yielded, to be refused)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirs, names in os.walk(path):
                dirs.sort()
                linked = [d for d in dirs if (Path(dirpath) / d).is_symlink()]
                for name in sorted(names + linked):
                    yield Path(dirpath) / name
        else:
            yield path


def run_deidentify(args: argparse.Namespace) -> int:
    outdir: Path = args.output
    try:
        outdir.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
    except OSError as error:
        raise DicomError(
            f"{outdir}: cannot create the output directory: {error.strerror}",
            "give a writable directory whose parent exists with -o",
        ) from None
    files = list(_files(args.paths))
    sizes = {p: p.lstat().st_size if p.exists() else 0 for p in files}
    progress = Progress(len(files), sum(sizes.values()), enabled=not args.json)
    results: list[Result] = []
    failures: list[tuple[Path, DicomError]] = []
    deidentifier = Deidentifier()
    try:
        for path in files:
            try:
                results.append(
                    deidentify_file(
                        path, outdir, deidentifier, accept_burned_in=args.accept_burned_in
                    )
                )
            except DicomError as error:
                failures.append((path, error))
            progress.step(sizes[path])
    finally:
        progress.close()
        deidentifier.close()
    total = Counts()
    for result in results:
        for f in fields(Counts):
            setattr(total, f.name, getattr(total, f.name) + getattr(result.counts, f.name))
    if args.json:
        print_json(
            {
                "output_directory": str(outdir),
                "profile": "DICOM PS3.15 Annex E Basic Application Confidentiality Profile",
                "files": [r.to_json() for r in results]
                + [
                    {"input": str(p), "status": "failed", "error": e.message, "hint": e.hint}
                    for p, e in failures
                ],
                "deidentified": len(results),
                "failed": len(failures),
                "counts": asdict(total),
            }
        )
    else:
        for _, failure in failures:
            print(f"imgvaultctl: error: {failure}", file=sys.stderr)
        for result in results:
            if result.burned_in_accepted:
                print(f"warning: {result.input}: may show burned-in text (accepted)")
        print(
            f"{len(results)} de-identified into {outdir}, {len(failures)} failed; elements: "
            f"{total.removed} removed, {total.emptied} emptied, {total.dummied} dummied, "
            f"{total.uids_replaced} UIDs replaced, {total.private_removed} private removed"
        )
    return 1 if failures else 0


INSPECT_HELP = """\
Check mode of `dicom deidentify` for one file: every element that would be removed, emptied,
given a dummy value or a new UID (private elements too, inside sequences with item numbers),
and whether the file would be refused for burned-in annotation. Nothing is written. Values are
not shown: the originals are patient data and the new UIDs depend on each export's key.

examples:
  imgvaultctl dicom inspect /srv/pacs/export/study42/ct1.dcm
  imgvaultctl dicom inspect us1.dcm --json
"""


def run_inspect(args: argparse.Namespace) -> int:
    deidentifier = Deidentifier()
    try:
        _, changes, problem = prepare(args.path, deidentifier, accept_burned_in=True)
    finally:
        deidentifier.close()
    counts = Counts()
    counts.add(changes)
    if args.json:
        print_json(
            {
                "input": str(args.path),
                "burned_in_refusal": problem,
                "counts": asdict(counts),
                "changes": [c.to_json() for c in changes],
            }
        )
        return 0
    rows = [(c.where, c.name, c.action) for c in changes]
    print(format_table(["ELEMENT", "NAME", "ACTION"], rows))
    print(
        f"{len(changes)} elements would change; the method attributes (0012,0062-0064) would "
        "be added and the file meta rebuilt"
    )
    if problem:
        print(f"refused unless --accept-burned-in: {problem}")
    return 0


def register(subparsers: Subparsers) -> None:
    group = add_command(
        subparsers, "dicom", help="de-identify DICOM files for research exports", description=HELP
    )
    verbs = group.add_subparsers(dest="verb", required=True, metavar="VERB")
    parser = add_command(
        verbs,
        "deidentify",
        help="export de-identified copies of DICOM files",
        description=HELP,
        json_output=True,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or dirs")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="OUTDIR",
        help="export directory (created if missing; existing files are never overwritten)",
    )
    parser.add_argument(
        "--accept-burned-in",
        action="store_true",
        help="export images that may show patient data as burned-in text (you checked them)",
    )
    parser.set_defaults(handler=run_deidentify)
    inspect = add_command(
        verbs,
        "inspect",
        help="show what deidentify would change in one file (check mode)",
        description=INSPECT_HELP,
        json_output=True,
    )
    inspect.add_argument("path", type=Path, metavar="FILE", help="a DICOM file")
    inspect.set_defaults(handler=run_inspect)
