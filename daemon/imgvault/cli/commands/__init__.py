"""One module per `imgvaultctl` command group.

Each module defines `register(subparsers)`, which adds its parser(s) and sets `handler` (a
function taking the parsed arguments and returning an exit code). `imgvault.cli.main` discovers
the modules here, so adding a command group touches no other file. A group with many commands
is a sub-package whose `register` adds the group's parser and calls `register_all` on itself.
"""

import argparse
import importlib
import pkgutil
from types import ModuleType
from typing import TypeAlias

# What each command module's `register` receives (subscriptable for type checkers only).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register_all(package: ModuleType, subparsers: Subparsers) -> None:
    """Call `register(subparsers)` of every module in `package`, in name order."""
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        importlib.import_module(f"{package.__name__}.{info.name}").register(subparsers)


def add_command(
    subparsers: Subparsers, name: str, *, help: str, description: str, json_output: bool = False
) -> argparse.ArgumentParser:
    """A command's parser, the same way everywhere: `description` printed as written (examples
    keep their layout) and, for commands that report, `--json`."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    return parser
