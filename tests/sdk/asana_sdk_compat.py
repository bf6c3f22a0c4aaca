#!/usr/bin/env python3
"""Compatibility check: the official Asana Python SDK (v5) against `pushgate sandbox`.

Usage (from the repository root):

    pip install 'asana>=5,<6'
    python3 tests/sdk/asana_sdk_compat.py target/debug/pushgate

It starts `pushgate sandbox --listen 127.0.0.1:0 --data <tmp>/sandbox.json`,
reads the handshake JSON from the sandbox's first stdout line, and then drives
the sandbox only through the SDK, configured as Asana documents it
(asana.Configuration / asana.ApiClient / asana.TasksApi / asana.StoriesApi /
asana.UsersApi / asana.EventsApi): create a task asking nested opt_fields,
page through a project and through GET /tasks, comment, complete, move
between projects, an approval decided by the approver with a client and
token of their own, and events with a sync token.

Each step prints one line; the last line is `N passed, 0 failed` on success.
On the first failure it prints the error (with the HTTP request the SDK sent
and the sandbox's response), a `N passed, 1 failed` line, and exits 1.
Set ASANA_SDK_COMPAT_VERBOSE=1 to print every request/response.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from urllib.parse import urlsplit

try:
    import asana
    from asana.rest import ApiException
except ImportError:  # pragma: no cover - environment problem, not a test failure
    print("the official Asana SDK is not installed: pip install 'asana>=5,<6'", file=sys.stderr)
    print("0 passed, 1 failed")
    sys.exit(2)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERBOSE = os.environ.get("ASANA_SDK_COMPAT_VERBOSE") == "1"
OVERALL_TIMEOUT_S = 180
HANDSHAKE_TIMEOUT_S = 30
PAGE_LIMIT = 2
EXTRA_TASKS = 5  # plus the main task: 6 tasks -> 3+ pages of 2


class StepFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise StepFailure(msg)


# --------------------------------------------------------------------------
# Recording of the HTTP traffic the SDK produces (wraps, never alters, it).
# --------------------------------------------------------------------------
class Recorder:
    def __init__(self):
        self.exchanges = []  # dicts: method, path, query, body, status, response

    def install(self, api_client):
        rest = api_client.rest_client
        original = rest.request  # bound method of RESTClientObject

        def recording_request(method, url, query_params=None, headers=None, body=None,
                              post_params=None, _preload_content=True, _request_timeout=None):
            parts = urlsplit(url)
            entry = {
                "method": method.upper(),
                "path": parts.path,
                # POST/PUT/DELETE: the SDK already put the query into the URL;
                # GET: it is passed separately as query_params.
                "query": list(query_params or []) if method.upper() in ("GET", "HEAD") else parts.query,
                "body": body,
                "headers": {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"},
                "status": None,
                "response": None,
            }
            self.exchanges.append(entry)
            try:
                resp = original(method, url, query_params=query_params, headers=headers, body=body,
                                post_params=post_params, _preload_content=_preload_content,
                                _request_timeout=_request_timeout)
            except ApiException as e:
                entry["status"] = e.status
                entry["response"] = e.body
                if VERBOSE:
                    print("    " + describe(entry))
                raise
            entry["status"] = resp.status
            data = getattr(resp, "data", b"")
            entry["response"] = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            if VERBOSE:
                print("    " + describe(entry))
            return resp

        rest.request = recording_request

    def mark(self):
        return len(self.exchanges)

    def since(self, mark):
        return self.exchanges[mark:]

    def last(self):
        return self.exchanges[-1] if self.exchanges else None


def describe(entry, max_response=2000):
    if entry is None:
        return "(no HTTP request was sent)"
    resp = entry["response"]
    if isinstance(resp, bytes):
        resp = resp.decode("utf-8", "replace")
    resp = "" if resp is None else str(resp)
    if len(resp) > max_response:
        resp = resp[:max_response] + "...(truncated)"
    return "request: {} {} query={!r} body={} -> status {} response: {}".format(
        entry["method"], entry["path"], entry["query"],
        json.dumps(entry["body"]) if entry["body"] is not None else "(none)",
        entry["status"], resp)


# --------------------------------------------------------------------------
# Sandbox subprocess.
# --------------------------------------------------------------------------
class Sandbox:
    def __init__(self, binary, data_path, stderr_path):
        self.binary = binary
        self.data_path = data_path
        self.stderr_path = stderr_path
        self.proc = None
        self._stderr_file = None

    def start(self):
        self._stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.binary, "sandbox", "--listen", "127.0.0.1:0", "--data", self.data_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr_file,
        )
        box = {}

        def read_first_line():
            box["line"] = self.proc.stdout.readline()
            # keep draining so the sandbox never blocks on a full stdout pipe
            for _ in iter(self.proc.stdout.readline, b""):
                pass

        reader = threading.Thread(target=read_first_line, daemon=True)
        reader.start()
        deadline_thread = threading.Event()
        waited = 0.0
        while "line" not in box and waited < HANDSHAKE_TIMEOUT_S:
            deadline_thread.wait(0.05)
            waited += 0.05
            if self.proc.poll() is not None and "line" not in box:
                reader.join(1)
                break
        line = box.get("line")
        if not line:
            raise StepFailure("sandbox printed no first stdout line (exit code {}); stderr: {}".format(
                self.proc.poll(), self.stderr_tail()))
        try:
            return json.loads(line.decode("utf-8"))
        except ValueError as e:
            raise StepFailure("first stdout line is not JSON ({}): {!r}".format(e, line[:500]))

    def stderr_tail(self, n=2000):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._stderr_file is not None:
            self._stderr_file.close()


# --------------------------------------------------------------------------
# The steps.
# --------------------------------------------------------------------------
def gid_set(items):
    return [it["gid"] for it in items]


def run(binary, tmpdir, report):
    sandbox = Sandbox(binary, os.path.join(tmpdir, "sandbox.json"), os.path.join(tmpdir, "sandbox.stderr"))
    ctx = {}
    recorder = Recorder()
    try:
        # 1 ---------------------------------------------------------------
        def step_start():
            info = sandbox.start()
            for key in ("base_url", "token", "workspace", "projects", "custom_fields", "users"):
                check(key in info, "handshake lacks {!r}: {}".format(key, info))
            check(info["base_url"].startswith("http://127.0.0.1:") and info["base_url"].endswith("/api/1.0"),
                  "unexpected base_url {!r}".format(info["base_url"]))
            for name in ("Lock Beta Release", "Beta Push Tasks"):
                check(name in info["projects"], "project {!r} not seeded: {}".format(name, info["projects"]))
            ctx["info"] = info
            ctx["p1"] = info["projects"]["Lock Beta Release"]
            ctx["p2"] = info["projects"]["Beta Push Tasks"]

            configuration = asana.Configuration()
            configuration.access_token = info["token"]
            configuration.host = info["base_url"]
            api_client = asana.ApiClient(configuration)
            recorder.install(api_client)
            ctx["tasks_api"] = asana.TasksApi(api_client)
            ctx["stories_api"] = asana.StoriesApi(api_client)
            ctx["users_api"] = asana.UsersApi(api_client)
            ctx["events_api"] = asana.EventsApi(api_client)
            return "sandbox up at {} (workspace {})".format(info["base_url"], info["workspace"])

        report.step("start sandbox and read handshake", step_start)

        tasks_api = lambda: ctx["tasks_api"]  # noqa: E731
        stories_api = lambda: ctx["stories_api"]  # noqa: E731

        # 2 ---------------------------------------------------------------
        def step_create():
            body = {"data": {
                "name": "SDK compat: main task",
                "notes": "created by tests/sdk/asana_sdk_compat.py",
                "projects": [ctx["p1"]],
                "assignee": "me",
            }}
            # Nested paths Asana resolves through the schema, not all of
            # them in the operation's enum (issue #15).
            opts = {"opt_fields": "name,completed,projects.gid,memberships.project.name,assignee.email"}
            task = tasks_api().create_task(body, opts)
            check(isinstance(task, dict), "create_task returned {!r}, expected the task dict".format(task))
            check(task.get("gid"), "created task has no gid: {}".format(task))
            check(task.get("name") == "SDK compat: main task", "name round-trip: {}".format(task))
            check(task.get("completed") is False, "new task not incomplete: {}".format(task))
            check(task.get("projects") == [{"gid": ctx["p1"]}],
                  "projects.gid gives exactly the gids: {}".format(task.get("projects")))
            check(task.get("memberships") == [{"project": {"gid": ctx["p1"], "name": "Lock Beta Release"}}],
                  "memberships.project.name: {}".format(task.get("memberships")))
            check((task.get("assignee") or {}).get("email") == "sandbox@pushgate.invalid",
                  "assignee.email: {}".format(task.get("assignee")))
            check("notes" not in task, "only the asked fields come back: {}".format(task))
            ctx["task"] = task["gid"]
            return "task {} in 'Lock Beta Release'".format(task["gid"])

        report.step("create_task asking opt_fields=name,completed,projects.gid,...", step_create)

        # 3 ---------------------------------------------------------------
        def step_create_more():
            extra = []
            for i in range(EXTRA_TASKS):
                t = tasks_api().create_task(
                    {"data": {"name": "SDK compat: filler {}".format(i), "projects": [ctx["p1"]]}}, {})
                check(t.get("gid"), "filler task has no gid: {}".format(t))
                extra.append(t["gid"])
            ctx["created"] = [ctx["task"]] + extra
            check(len(set(ctx["created"])) == len(ctx["created"]), "duplicate gids: {}".format(ctx["created"]))
            return "{} more tasks, {} created in total".format(len(extra), len(ctx["created"]))

        report.step("create_task x{} more (to get several pages)".format(EXTRA_TASKS), step_create_more)

        # 4 ---------------------------------------------------------------
        def step_manual_pages():
            # Page by page, the raw way: full_payload=True returns {data, next_page};
            # follow next_page.offset until next_page is null.
            seen, pages, offset = [], 0, None
            while True:
                opts = {"completed_since": "now", "limit": PAGE_LIMIT}
                if offset is not None:
                    opts["offset"] = offset
                page = tasks_api().get_tasks_for_project(ctx["p1"], opts, full_payload=True)
                pages += 1
                check(isinstance(page, dict) and isinstance(page.get("data"), list),
                      "page {} is not {{data: [...]}}: {!r}".format(pages, page))
                check("next_page" in page, "page {} has no next_page key: {!r}".format(pages, page))
                check(len(page["data"]) <= PAGE_LIMIT,
                      "page {} has {} items > limit {}".format(pages, len(page["data"]), PAGE_LIMIT))
                for item in page["data"]:
                    check(item.get("gid") and item.get("name") is not None
                          and item.get("resource_type") == "task",
                          "compact task lacks gid/name/resource_type: {}".format(item))
                seen.extend(gid_set(page["data"]))
                nxt = page["next_page"]
                if nxt is None:
                    break
                for key in ("offset", "path", "uri"):
                    check(isinstance(nxt.get(key), str) and nxt[key],
                          "next_page.{} missing on page {}: {!r}".format(key, pages, nxt))
                check(nxt["offset"] != offset, "next_page.offset did not advance: {!r}".format(nxt))
                check(pages < 50, "more than 50 pages; pagination does not terminate")
                offset = nxt["offset"]
            check(pages >= 3, "expected >=3 pages of {} for {} tasks, got {}".format(
                PAGE_LIMIT, len(ctx["created"]), pages))
            check(len(seen) == len(set(seen)), "a task appeared twice across pages: {}".format(seen))
            for gid in ctx["created"]:
                check(seen.count(gid) == 1, "task {} appears {} times across pages".format(gid, seen.count(gid)))
            return "{} pages of <= {}, {} tasks, each created task exactly once".format(pages, PAGE_LIMIT, len(seen))

        report.step("get_tasks_for_project page by page (full_payload, next_page.offset)", step_manual_pages)

        # 5 ---------------------------------------------------------------
        def step_sdk_iterator():
            # The documented default: the call returns a generator that follows
            # next_page by itself. Pass a fresh opts dict: the SDK mutates it
            # (it writes limit and offset into it while paginating).
            mark = recorder.mark()
            items = tasks_api().get_tasks_for_project(ctx["p1"], {"completed_since": "now", "limit": PAGE_LIMIT})
            check(not isinstance(items, (dict, list)), "expected a generator, got {!r}".format(type(items)))
            gids = gid_set(list(items))
            requests = [e for e in recorder.since(mark) if e["method"] == "GET"]
            check(len(requests) >= 3, "SDK made {} GET(s); expected it to follow next_page over >=3 pages".format(
                len(requests)))
            for i, e in enumerate(requests):
                q = dict(e["query"])
                check(str(q.get("limit")) == str(PAGE_LIMIT) and q.get("completed_since") == "now",
                      "request {} query lost limit/completed_since: {}".format(i + 1, e["query"]))
                check(("offset" in q) == (i > 0), "request {} offset presence wrong: {}".format(i + 1, e["query"]))
            check(len(gids) == len(set(gids)), "the SDK iterator yielded a task twice: {}".format(gids))
            for gid in ctx["created"]:
                check(gids.count(gid) == 1, "task {} yielded {} times".format(gid, gids.count(gid)))
            return "SDK generator made {} requests, yielded {} tasks, each created task exactly once".format(
                len(requests), len(gids))

        report.step("get_tasks_for_project via the SDK's auto-paginating generator", step_sdk_iterator)

        # 5b --------------------------------------------------------------
        def step_get_tasks():
            # GET /tasks with a project, page by page and through the generator.
            page = tasks_api().get_tasks({"project": ctx["p1"], "limit": PAGE_LIMIT}, full_payload=True)
            check(len(page["data"]) == PAGE_LIMIT, "first page: {!r}".format(page))
            check(page["next_page"]["path"].startswith("/tasks?"), "next_page: {!r}".format(page["next_page"]))
            mark = recorder.mark()
            gids = gid_set(tasks_api().get_tasks({"project": ctx["p1"], "limit": PAGE_LIMIT}))
            requests = [e for e in recorder.since(mark) if e["method"] == "GET"]
            check(len(requests) >= 3, "the generator made {} GET(s)".format(len(requests)))
            check(gids == ctx["created"], "GET /tasks order and uniqueness: {} vs {}".format(gids, ctx["created"]))
            mine = gid_set(tasks_api().get_tasks({"assignee": "me", "workspace": ctx["info"]["workspace"], "limit": 100}))
            check(mine == [ctx["task"]], "assignee=me in the workspace: {}".format(mine))
            try:
                tasks_api().get_tasks({"limit": 10}, full_payload=True)
                raise StepFailure("GET /tasks without project or assignee+workspace did not fail")
            except ApiException as e:
                check(e.status == 400 and b"project" in e.body, "the 400 says what is missing: {} {}".format(e.status, e.body))
            return "{} requests over GET /tasks, each created task once".format(len(requests))

        report.step("get_tasks (GET /tasks) page by page and through the generator", step_get_tasks)

        # 6 ---------------------------------------------------------------
        comment = "SDK compat comment: beta push looks good"

        def step_comment():
            story = stories_api().create_story_for_task({"data": {"text": comment}}, ctx["task"], {})
            check(isinstance(story, dict) and story.get("gid"), "create_story_for_task returned {!r}".format(story))
            check(story.get("text") == comment, "story text round-trip: {}".format(story))
            if "resource_subtype" in story:
                check(story["resource_subtype"] == "comment_added", "story subtype: {}".format(story))
            ctx["story"] = story["gid"]
            return "story {}".format(story["gid"])

        report.step("create_story_for_task (comment)", step_comment)

        # 7 ---------------------------------------------------------------
        def step_complete():
            task = tasks_api().update_task({"data": {"completed": True}}, ctx["task"], {})
            check(isinstance(task, dict) and task.get("gid") == ctx["task"], "update_task returned {!r}".format(task))
            check(task.get("completed") is True, "update_task did not complete the task: {}".format(task))
            return "completed=True"

        report.step("update_task completed=True", step_complete)

        # 8 ---------------------------------------------------------------
        def step_add_project():
            res = tasks_api().add_project_for_task({"data": {"project": ctx["p2"]}}, ctx["task"])
            check(res == {} or res is None or res == b"", "add_project_for_task returned {!r}".format(res))
            return "added to 'Beta Push Tasks'"

        report.step("add_project_for_task 'Beta Push Tasks'", step_add_project)

        # 9 ---------------------------------------------------------------
        def step_remove_project():
            res = tasks_api().remove_project_for_task({"data": {"project": ctx["p1"]}}, ctx["task"])
            check(res == {} or res is None or res == b"", "remove_project_for_task returned {!r}".format(res))
            return "removed from 'Lock Beta Release'"

        report.step("remove_project_for_task 'Lock Beta Release'", step_remove_project)

        # 10 --------------------------------------------------------------
        def step_get_task():
            task = tasks_api().get_task(ctx["task"], {"opt_fields": "projects.name,completed"})
            check(isinstance(task, dict) and task.get("gid") == ctx["task"], "get_task returned {!r}".format(task))
            check(task.get("completed") is True, "task not completed: {}".format(task))
            projects = task.get("projects")
            check(isinstance(projects, list) and len(projects) == 1, "projects: {!r}".format(projects))
            check(projects[0].get("gid") == ctx["p2"] and projects[0].get("name") == "Beta Push Tasks",
                  "task should be only in 'Beta Push Tasks' ({}): {!r}".format(ctx["p2"], projects))
            return "completed, projects = ['Beta Push Tasks']"

        report.step("get_task opt_fields=projects.name,completed", step_get_task)

        # 11 --------------------------------------------------------------
        def step_not_in_first():
            gids = gid_set(tasks_api().get_tasks_for_project(ctx["p1"], {"completed_since": "now", "limit": PAGE_LIMIT}))
            check(ctx["task"] not in gids, "task still listed in 'Lock Beta Release': {}".format(gids))
            for gid in ctx["created"][1:]:
                check(gid in gids, "filler task {} vanished from 'Lock Beta Release'".format(gid))
            return "{} incomplete tasks remain, main task gone".format(len(gids))

        report.step("get_tasks_for_project 'Lock Beta Release' no longer lists it", step_not_in_first)

        # 12 --------------------------------------------------------------
        def step_stories():
            stories = list(stories_api().get_stories_for_task(ctx["task"], {}))
            check(all(isinstance(s, dict) and s.get("gid") for s in stories), "stories: {!r}".format(stories))
            matches = [s for s in stories if s.get("gid") == ctx["story"]]
            check(len(matches) == 1, "comment story {} listed {} times in {}".format(
                ctx["story"], len(matches), stories))
            check(matches[0].get("text") == comment, "listed comment text: {}".format(matches[0]))
            return "{} stories, comment present".format(len(stories))

        report.step("get_stories_for_task shows the comment", step_stories)

        # 13 --------------------------------------------------------------
        def step_approval():
            approver_email = "approver@pushgate.invalid"
            approver = ctx["info"]["users"].get(approver_email)
            check(approver and approver.get("token"), "no approver in the handshake: {}".format(ctx["info"]["users"]))
            created = tasks_api().create_task({"data": {
                "name": "SDK compat: approve prod push", "resource_subtype": "approval",
                "projects": [ctx["info"]["projects"]["Lock Production Release"]], "assignee": approver_email,
            }}, {"opt_fields": "resource_subtype,approval_status,completed"})
            check(created.get("approval_status") == "pending" and created.get("completed") is False,
                  "a new approval task is pending: {}".format(created))
            # The approver, with a client of their own.
            configuration = asana.Configuration()
            configuration.access_token = approver["token"]
            configuration.host = ctx["info"]["base_url"]
            theirs = asana.TasksApi(asana.ApiClient(configuration))
            theirs.update_task({"data": {"approval_status": "approved"}}, created["gid"], {})
            task = tasks_api().get_task(created["gid"], {"opt_fields": "approval_status,completed,completed_by"})
            check(task.get("approval_status") == "approved" and task.get("completed") is True,
                  "approved and so complete: {}".format(task))
            who = ctx["users_api"].get_user(task["completed_by"]["gid"], {"opt_fields": "email"})
            check(who.get("email") == approver_email, "decided by {}".format(who))
            stories = list(stories_api().get_stories_for_task(created["gid"], {
                "opt_fields": "resource_subtype,old_approval_status,new_approval_status"}))
            decided = [x for x in stories if x.get("resource_subtype") == "approval_status_changed"]
            check(len(decided) == 1 and decided[0].get("old_approval_status") == "pending"
                  and decided[0].get("new_approval_status") == "approved", "stories: {}".format(stories))
            return "approved by {}".format(approver_email)

        report.step("an approval task approved by another person", step_approval)

        # 14 --------------------------------------------------------------
        def step_events():
            events_api = ctx["events_api"]
            # The SDK's event iterator: 412, then again with the fresh token.
            check(list(events_api.get_events(ctx["p2"], {})) == [], "nothing has happened since subscribing")
            try:
                events_api.get_events(ctx["p2"], {}, full_payload=True)
                raise StepFailure("GET /events without a sync token did not answer 412")
            except ApiException as e:
                check(e.status == 412, "status {}: {}".format(e.status, e.body))
                sync = json.loads(e.body.decode("utf-8"))["sync"]
            stories_api().create_story_for_task({"data": {"text": "an event"}}, ctx["task"], {})
            page = events_api.get_events(ctx["p2"], {"sync": sync}, full_payload=True)
            kinds = [(e["resource"]["resource_type"], e["action"], (e.get("parent") or {}).get("gid"))
                     for e in page["data"]]
            check(kinds == [("story", "added", ctx["task"])], "events: {}".format(page))
            check(page["has_more"] is False and page["sync"] != sync, "has_more/sync: {}".format(page))
            return "412, then {} event(s) since the token".format(len(kinds))

        report.step("get_events with a sync token", step_events)
    finally:
        sandbox.stop()
        report.sandbox_stderr = sandbox.stderr_tail()
        report.last_exchange = recorder.last()


class Report:
    def __init__(self):
        self.passed = 0
        self.sandbox_stderr = ""
        self.last_exchange = None

    def step(self, name, fn):
        n = self.passed + 1
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - report any failure of the step
            raise StepError(n, name, e)
        self.passed += 1
        print("ok {} - {}{}".format(n, name, ": " + detail if detail else ""), flush=True)


class StepError(Exception):
    def __init__(self, n, name, cause):
        super().__init__("step {} ({}) failed".format(n, name))
        self.n, self.name, self.cause = n, name, cause


def main(argv):
    binary = argv[1] if len(argv) > 1 else os.path.join(REPO_ROOT, "target", "debug", "pushgate")
    binary = os.path.abspath(binary)

    def on_alarm(signum, frame):
        raise TimeoutError("overall timeout of {}s exceeded".format(OVERALL_TIMEOUT_S))

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(OVERALL_TIMEOUT_S)

    report = Report()
    with tempfile.TemporaryDirectory(prefix="asana-sdk-compat-") as tmpdir:
        try:
            if not os.access(binary, os.X_OK):
                raise StepError(1, "start sandbox and read handshake",
                                StepFailure("pushgate binary not found or not executable: {}".format(binary)))
            run(binary, tmpdir, report)
        except (StepError, TimeoutError, KeyboardInterrupt) as e:
            signal.alarm(0)
            if isinstance(e, StepError):
                cause = e.cause
                if isinstance(cause, ApiException):
                    print("FAIL {} - {}: ApiException status={} reason={} body={}".format(
                        e.n, e.name, cause.status, cause.reason, cause.body), flush=True)
                else:
                    print("FAIL {} - {}: {}: {}".format(e.n, e.name, type(cause).__name__, cause), flush=True)
                if not isinstance(cause, (ApiException, StepFailure)):
                    traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stdout)
            else:
                print("FAIL {} - {}".format(report.passed + 1, e))
            print("  last SDK " + describe(report.last_exchange))
            if report.sandbox_stderr:
                print("  sandbox stderr (tail):")
                for line in report.sandbox_stderr.splitlines()[-15:]:
                    print("    " + line)
            print("{} passed, 1 failed".format(report.passed), flush=True)
            return 1
        finally:
            signal.alarm(0)
    print("{} passed, 0 failed".format(report.passed), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
