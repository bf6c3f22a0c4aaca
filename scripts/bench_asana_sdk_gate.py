#!/usr/bin/env python3
"""The gate check written with the official Asana Python client (v5): what a
team would script instead of pushgate's gate. scripts/bench times it against
`pushgate push CLUSTER --dry-run`.

Usage: bench_asana_sdk_gate.py BASE_URL TOKEN LOCK_PROJECT_GID [COMPLETED_SINCE]

It reads the lock project as pushgate does (SPEC §2 step 4): the incomplete
tasks and those completed since COMPLETED_SINCE (every task without it),
100 a page, with the fields the decision needs, following next_page to the
end. An incomplete task is a lock unless it names a fix commit (the
"Fix commit" field or a "Fixed-in: <sha>" notes line), which would need a
look at the repository: those are counted, not judged (the benchmark seeds
none). Prints one JSON line: locked, tasks read, locks, fix-carrying tasks,
and the check's own time (without the interpreter's start and the import).
Exit 3 when locked, 0 when not, like `pushgate push --dry-run`.
"""

import json
import re
import sys
import time

started = time.perf_counter()
import asana  # noqa: E402  (timed: the import is part of what a cron job pays)

imported = time.perf_counter()

FIELDS = "name,completed,completed_at,assignee.name,permalink_url,notes,custom_fields.name,custom_fields.text_value"
FIX_FIELD = "Fix commit"
FIXED_IN = re.compile(r"^\s*Fixed-in:\s*([0-9a-fA-F]{7,40})\s*$")


def fix_commit(task):
    for f in task.get("custom_fields") or []:
        if f.get("name") == FIX_FIELD and (f.get("text_value") or "").strip():
            return f["text_value"].strip()
    for line in reversed((task.get("notes") or "").splitlines()):
        m = FIXED_IN.match(line)
        if m:
            return m.group(1)
    return None


def main():
    if len(sys.argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base_url, token, project = sys.argv[1:4]
    since = sys.argv[4] if len(sys.argv) == 5 else None
    configuration = asana.Configuration()
    configuration.access_token = token
    configuration.host = base_url
    tasks_api = asana.TasksApi(asana.ApiClient(configuration))
    opts = {"limit": 100, "opt_fields": FIELDS}
    if since:
        opts["completed_since"] = since
    check_started = time.perf_counter()
    tasks = list(tasks_api.get_tasks_for_project(project, opts))
    locks = [t for t in tasks if not t.get("completed") and fix_commit(t) is None]
    with_fix = [t for t in tasks if fix_commit(t) is not None]
    done = time.perf_counter()
    print(json.dumps({
        "locked": bool(locks),
        "tasks": len(tasks),
        "locks": len(locks),
        "with_fix_commit": len(with_fix),
        "import_ms": round((imported - started) * 1000, 1),
        "check_ms": round((done - check_started) * 1000, 1),
    }))
    sys.exit(3 if locks else 0)


if __name__ == "__main__":
    main()
