"""`imgvaultctl daemon status | rescan`: ask the running imgvaultd over its control socket."""

import argparse
from typing import Any

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.output import format_table, print_json
from imgvault.control import client, protocol
from imgvault.errors import ImgvaultError

HELP = f"""\
Ask the running imgvaultd (systemctl status imgvaultd) what it is doing, over its control
socket /run/imgvault/control.sock ($IMGVAULT_RUNTIME_DIR). The daemon checks who asks from the
kernel's credentials of the connecting process: `status` is for root and members of group
{protocol.GROUP}, `rescan` for root only.

  status   the stores it watches (files waiting, files encrypted, refused, failed since it
           started) and the stores it could not watch, with the reason
  rescan   watch the registered stores it does not watch yet: a store added with
           `imgvaultctl file store add`, or one whose volume was unlocked after the start

examples:
  imgvaultctl daemon status
  imgvaultctl volume unlock pacs && imgvaultctl daemon rescan
  imgvaultctl daemon status --json | jq '.stores[] | select(.watching | not)'
"""


def service_report() -> dict[str, Any]:
    """The daemon's status, or why it cannot be had (for `imgvaultctl status`)."""
    try:
        status: dict[str, Any] = client.call("status")
    except ImgvaultError as error:
        return {"reachable": False, "error": error.message, "hint": error.hint}
    return {"reachable": True, **status}


def service_summary(report: dict[str, Any]) -> str:
    """One line (two when unreachable) on the daemon, for `imgvaultctl status`."""
    if not report["reachable"]:
        return f"service: {report['error']}\n  hint: {report['hint']}"
    stores = report["stores"]
    line = (
        f"imgvaultd {report['version']} (pid {report['pid']}): watching "
        f"{sum(s['watching'] for s in stores)} of {len(stores)} store(s)"
    )
    missing = [s["name"] for s in stores if not s["watching"]]
    if missing:
        line += f"; NOT watched: {', '.join(missing)} (imgvaultctl daemon status)"
    return line


def _events(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "-"


def _run_status(args: argparse.Namespace) -> int:
    status: dict[str, Any] = client.call("status")
    if args.json:
        print_json(status)
        return 0
    print(
        f"imgvaultd {status['version']} (pid {status['pid']}), up "
        f"{status['uptime_seconds']:.0f} s, {len(status['stores'])} store(s) registered"
    )
    rows = [
        [s["name"], s["root"] or "-", "yes" if s["watching"] else "NO", str(s["pending"]),
         _events(s["events"]) if s["watching"] else s["problem"]]
        for s in status["stores"]
    ]  # fmt: skip
    if rows:
        print(format_table(["STORE", "ROOT", "WATCHED", "PENDING", "SINCE START"], rows))
    return 0


def _run_rescan(args: argparse.Namespace) -> int:
    result: dict[str, Any] = client.call("rescan")
    if args.json:
        print_json(result)
        return 0
    print(f"now watching: {', '.join(result['started']) or 'no new store'}")
    for name, problem in sorted(result["not_watched"].items()):
        print(f"not watched: {name}: {problem}")
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "daemon", help="ask the running imgvaultd (status, rescan)", description=HELP
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    status = add_command(
        actions, "status", help="what imgvaultd watches and did", description=HELP,
        json_output=True,
    )  # fmt: skip
    status.set_defaults(handler=_run_status)
    rescan = add_command(
        actions, "rescan", help="watch stores that became available (root)", description=HELP,
        json_output=True,
    )  # fmt: skip
    rescan.set_defaults(handler=_run_rescan)
