"""A minimal registry of encrypted stores: a name, a root directory and recipient key names.

Kept as one JSON file in the state directory, replaced atomically. It lets `file encrypt
--store` and `file rewrap --store` find the root and recipients, and `key list` show which
stores use a key.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from imgvault.filecrypt.errors import FilecryptError
from imgvault.filecrypt.keystore import NAME
from imgvault.paths import state_dir
from imgvault.system.atomic import write_atomic


@dataclass
class Store:
    name: str
    root: Path
    recipients: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "root": str(self.root), "recipients": self.recipients}


class StoreRegistry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "filecrypt-stores.json"

    def stores(self) -> dict[str, Store]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            raise FilecryptError(
                f"{self.path}: cannot read the store registry: {error}",
                "restore it from backup, or re-add the stores with `imgvaultctl file store add`",
            ) from None
        return {
            name: Store(name, Path(entry["root"]), list(entry["recipients"]))
            for name, entry in raw.items()
        }

    def get(self, name: str) -> Store:
        store = self.stores().get(name)
        if store is None:
            raise FilecryptError(
                f"no store named {name!r}",
                "`imgvaultctl file store list` shows them; add one with `file store add`",
            )
        return store

    def using(self, key_name: str) -> list[str]:
        return [s.name for s in self.stores().values() if key_name in s.recipients]

    def save(self, store: Store) -> None:
        if not NAME.fullmatch(store.name):
            raise FilecryptError(f"invalid store name {store.name!r}", "use letters and digits")
        if not store.recipients:
            raise FilecryptError(
                f"store {store.name!r} needs at least one recipient",
                "give --recipient KEY, typically a service key and an offline recovery key",
            )
        stores = self.stores()
        stores[store.name] = store
        document = {name: s.to_json() for name, s in sorted(stores.items())}
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(self.path, (json.dumps(document, indent=2) + "\n").encode())
