"""Recovery-key format (unit tier): grouped, high entropy, forgiving when typed back."""

import re

import pytest

from imgvault.secret import Secret
from imgvault.volumes import recovery


def test_generated_keys_are_grouped_crockford_base32_and_distinct() -> None:
    keys = {recovery.generate().reveal() for _ in range(50)}
    assert len(keys) == 50
    for key in keys:
        assert re.fullmatch(rb"([0-9A-HJKMNP-TV-Z]{6}-){7}[0-9A-HJKMNP-TV-Z]{6}", key)


def test_normalize_accepts_case_spaces_and_lookalikes() -> None:
    key = recovery.generate()
    canonical = key.reveal()
    typed = canonical.lower().replace(b"-", b"  ").replace(b"0", b"o").replace(b"1", b"l")
    assert recovery.normalize(Secret(typed + b"\n")) == key
    assert recovery.normalize(Secret(canonical.replace(b"-", b""))) == key


@pytest.mark.parametrize("typed", [b"hunter2", b"U" * 48, b"A" * 47])
def test_normalize_rejects_non_keys_without_quoting_them(typed: bytes) -> None:
    with pytest.raises(recovery.RecoveryKeyError) as caught:
        recovery.normalize(Secret(typed))
    assert typed.decode() not in str(caught.value)
    assert "8 groups of 6" in str(caught.value)
