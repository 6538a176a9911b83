"""The admin's policy: cipher profiles and the compliance thresholds `status` checks.

Read from /etc/imgvault/policy.toml when it exists, else from the shipped policies/default.toml.
The file is replaced, not merged, so what the admin reads there is the whole policy in force.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgvault.errors import ImgvaultError
from imgvault.paths import config_dir, state_dir
from imgvault.volumes.luks import Pbkdf

SHIPPED_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


class PolicyError(ImgvaultError):
    exit_code = 78  # EX_CONFIG


@dataclass(frozen=True)
class Profile:
    """How a new volume is encrypted."""

    name: str
    cipher: str
    key_bits: int
    hash: str
    pbkdf: str
    pbkdf_memory_kib: int | None
    pbkdf_parallel: int | None
    iter_time_ms: int | None
    sector_size: int
    # Fixed PBKDF iterations (argon2: time cost) instead of a benchmark: test policies only.
    pbkdf_iterations: int | None = None

    def pbkdf_setting(self, memory_kib: int | None = None) -> Pbkdf:
        """The PBKDF for new keyslots; `memory_kib` overrides the profile's argon2 memory."""
        if self.pbkdf == "pbkdf2":
            return Pbkdf(
                kind="pbkdf2",
                hash=self.hash,
                iterations=self.pbkdf_iterations,
                iter_time_ms=self.iter_time_ms,
            )
        return Pbkdf(
            kind=self.pbkdf,
            iterations=self.pbkdf_iterations,
            memory_kib=memory_kib or self.pbkdf_memory_kib,
            parallel=self.pbkdf_parallel,
            iter_time_ms=self.iter_time_ms,
        )


@dataclass(frozen=True)
class VolumePolicy:
    default_profile: str
    header_backup_dir: Path
    min_key_bits: int
    min_pbkdf2_iterations: int
    require_recovery_key: bool
    min_keyslots: int
    allow_luks1: bool
    profiles: dict[str, Profile]

    def profile(self, name: str | None = None) -> Profile:
        """The named profile (default: the policy's), or a PolicyError listing the known ones."""
        wanted = name or self.default_profile
        try:
            return self.profiles[wanted]
        except KeyError:
            known = ", ".join(sorted(self.profiles))
            raise PolicyError(
                f"unknown cipher profile {wanted!r}", f"use one of: {known}"
            ) from None


@dataclass(frozen=True)
class Policy:
    source: Path
    volumes: VolumePolicy


def policy_path() -> Path:
    admin = config_dir() / "policy.toml"
    return admin if admin.exists() else SHIPPED_POLICY


def load_policy(path: Path | None = None) -> Policy:
    source = path or policy_path()
    try:
        document = tomllib.loads(source.read_text())
        return Policy(source=source, volumes=_volume_policy(document["volumes"]))
    except OSError as error:
        raise PolicyError(f"cannot read policy {source}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise PolicyError(
            f"invalid policy {source}: {error!r}",
            f"compare it with the shipped {SHIPPED_POLICY}",
        ) from None


def _volume_policy(section: dict[str, Any]) -> VolumePolicy:
    profiles = {
        name: Profile(
            name=name,
            cipher=str(p["cipher"]),
            key_bits=int(p["key_bits"]),
            hash=str(p["hash"]),
            pbkdf=str(p["pbkdf"]),
            pbkdf_memory_kib=p.get("pbkdf_memory_kib"),
            pbkdf_parallel=p.get("pbkdf_parallel"),
            iter_time_ms=p.get("iter_time_ms"),
            sector_size=int(p.get("sector_size", 512)),
            pbkdf_iterations=p.get("pbkdf_iterations"),
        )
        for name, p in section["profiles"].items()
    }
    policy = VolumePolicy(
        default_profile=str(section["default_profile"]),
        header_backup_dir=Path(section.get("header_backup_dir", state_dir() / "header-backups")),
        min_key_bits=int(section["min_key_bits"]),
        min_pbkdf2_iterations=int(section["min_pbkdf2_iterations"]),
        require_recovery_key=bool(section["require_recovery_key"]),
        min_keyslots=int(section["min_keyslots"]),
        allow_luks1=bool(section["allow_luks1"]),
        profiles=profiles,
    )
    policy.profile()  # the default profile must exist
    return policy
