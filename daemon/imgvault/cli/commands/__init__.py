"""One module per `imgvaultctl` command group.

Each module defines `register(subparsers)`, which adds its parser(s) and sets `handler` (a
function taking the parsed arguments and returning an exit code). `imgvault.cli.main` discovers
the modules here, so adding a command group touches no other file.
"""

import argparse
from typing import TypeAlias

# What each command module's `register` receives (subscriptable for type checkers only).
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
