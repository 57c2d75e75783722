"""Exit 0 when Pulp's status JSON (stdin) shows *our* processes online.

Usage: healthy.py WORKER_PID API_PGID CONTENT_PGID < status.json

Names in the status are "{pid}@{hostname}" of the worker process and of each gunicorn worker.
Checking them against the PIDs pulp-up just started matters after a crash: records of dead
processes count as online until their TTL (30-120 s) runs out, which would pass a plain
"list is non-empty" check while the new processes are still booting or already dead.
"""

import json
import sys


def pgid_of(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[2]
    except (OSError, IndexError):
        return None


def main() -> int:
    worker_pid, api_pgid, content_pgid = sys.argv[1:4]
    status = json.load(sys.stdin)
    if not status.get("database_connection", {}).get("connected"):
        return 1

    def pids(key: str) -> list[str]:
        return [app["name"].split("@", 1)[0] for app in status.get(key) or []]

    if worker_pid not in pids("online_workers"):
        return 1
    if not any(pgid_of(p) == api_pgid for p in pids("online_api_apps")):
        return 1
    if not any(pgid_of(p) == content_pgid for p in pids("online_content_apps")):
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, KeyError, AttributeError, TypeError):
        sys.exit(1)
