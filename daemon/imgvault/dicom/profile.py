"""The Basic Application Level Confidentiality Profile (PS3.15 Table E.1-1) as a tag lookup.

The table is vendored data (`data/confidentiality_profile.json`, source and edition recorded
there), so that a new edition of the standard is a data change, not a code change. Conditional
codes such as X/Z/D exist because the right action depends on the IOD (Type 1, 2 or 3 of the
attribute); imgvault knows no IODs, so each resolves to the choice that keeps any IOD
conformant: a dummy or an empty value rather than removal.
"""

import json
import re
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources


class Action(Enum):
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    UID = "U"


# Every code the Basic Profile column uses, and what imgvault does for it.
RESOLVED: dict[str, Action] = {
    "X": Action.REMOVE,
    "Z": Action.EMPTY,
    "D": Action.DUMMY,
    "K": Action.KEEP,
    "U": Action.UID,
    "X/Z": Action.EMPTY,
    "X/D": Action.DUMMY,
    "Z/D": Action.DUMMY,
    "X/Z/D": Action.DUMMY,
    "X/Z/U*": Action.UID,
}

# The one row that is a rule rather than a tag: private attributes are removed wholesale.
PRIVATE_ROW = "(GGGG,EEEE) WHERE GGGG IS ODD"
_TAG = re.compile(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)")


@dataclass(frozen=True)
class Profile:
    """Actions by exact tag, and (mask, value, action) for the rows with xx wildcards."""

    exact: dict[int, Action]
    masked: tuple[tuple[int, int, Action], ...]
    metadata: dict[str, str]
    rows: int

    def action(self, tag: int) -> Action | None:
        """The action for `tag`, or None when the table does not list it (then it is kept)."""
        found = self.exact.get(tag)
        if found is not None:
            return found
        for mask, value, action in self.masked:
            if tag & mask == value:
                return action
        return None


def parse_tag(text: str) -> tuple[int, int]:
    """`(60XX,3000)` -> (mask 0xFF00FFFF, value 0x60003000); an exact tag has mask 0xFFFFFFFF."""
    match = _TAG.fullmatch(text)
    if match is None:
        raise ValueError(f"not a tag: {text!r}")
    digits = match[1] + match[2]
    mask = int("".join("0" if c == "X" else "F" for c in digits), 16)
    return mask, int(digits.replace("X", "0"), 16)


def build(document: dict[str, object]) -> Profile:
    """The lookup from the vendored JSON document; raises ValueError for an unknown code."""
    exact: dict[int, Action] = {}
    masked: list[tuple[int, int, Action]] = []
    rows = document["rows"]
    if not isinstance(rows, list):
        raise ValueError("the profile document has no list of rows")
    for tag_text, _name, code in rows:
        if code not in RESOLVED:
            raise ValueError(f"{tag_text}: unknown action code {code!r}")
        if tag_text == PRIVATE_ROW:
            continue  # applied as its own rule: every odd-group element is removed
        mask, value = parse_tag(tag_text)
        if mask == 0xFFFFFFFF:
            exact[value] = RESOLVED[code]
        else:
            masked.append((mask, value, RESOLVED[code]))
    metadata = {k: str(v) for k, v in document.items() if k not in ("rows", "columns")}
    return Profile(exact, tuple(masked), metadata, len(rows))


def load_document() -> dict[str, object]:
    text = resources.files("imgvault.dicom").joinpath("data/confidentiality_profile.json")
    document: dict[str, object] = json.loads(text.read_text(encoding="utf-8"))
    return document


@cache
def basic_profile() -> Profile:
    return build(load_document())
