#!/usr/bin/env node
// Compatibility check: the official Asana Node client (v3, npm `asana`)
// against `pushgate sandbox`.
//
// Usage (from the repository root):
//
//     (cd tests/node && npm ci)
//     node tests/node/asana_node_compat.js target/debug/pushgate
//
// It starts `pushgate sandbox --listen 127.0.0.1:0 --data <tmp>/sandbox.json`,
// reads the handshake JSON from the sandbox's first stdout line, and then
// drives the sandbox only through the client, as its README documents it:
// `ApiClient.instance` with `basePath` and `authentications.token`, the API
// classes, Collections with `nextPage()`, `error.status` and
// `error.response.body` for errors, and the README's events loop (a 412
// whose body carries the first sync token, then `result._response.sync`).
//
// Each step prints one line; the last line is `N passed, 0 failed` on
// success. On the first failure it prints the error (with the status and
// body the sandbox answered), `N passed, 1 failed`, and exits 1.

'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

let Asana;
try {
  Asana = require('asana');
} catch (e) {
  console.error('the official Asana Node client is not installed: (cd tests/node && npm ci)');
  console.log('0 passed, 1 failed');
  process.exit(2);
}

const OVERALL_TIMEOUT_MS = 180000;
const PAGE_LIMIT = 2;

class StepFailure extends Error {}

function check(cond, msg) {
  if (!cond) throw new StepFailure(msg);
}

function describe(err) {
  if (err && err.status !== undefined && err.response) {
    const req = err.response.req || {};
    return `HTTP ${err.status} for ${req.method || '?'} ${req.path || '?'}: ${err.response.text}`;
  }
  return (err && err.stack) || String(err);
}

/// Starts the sandbox; resolves with its handshake and the child.
function startSandbox(binary, dataPath) {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['sandbox', '--listen', '127.0.0.1:0', '--data', dataPath], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    let done = false;
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      if (done) return;
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        done = true;
        try {
          resolve({ info: JSON.parse(out.slice(0, nl)), child });
        } catch (e) {
          reject(new StepFailure(`first stdout line is not JSON (${e}): ${out.slice(0, 500)}`));
        }
      }
    });
    child.on('error', (e) => { if (!done) { done = true; reject(e); } });
    child.on('exit', (code) => {
      if (!done) {
        done = true;
        reject(new StepFailure(`sandbox exited (${code}) before its first line; stderr: ${err}`));
      }
    });
  });
}

/// Every item of a paginated call, following `nextPage()` as the README does.
async function allPages(first) {
  let page = await first;
  const items = [];
  let pages = 0;
  while (true) {
    check(Array.isArray(page.data), `a page is not a list: ${JSON.stringify(page)}`);
    check(page.data.length <= PAGE_LIMIT, `a page has ${page.data.length} items > limit ${PAGE_LIMIT}`);
    items.push(...page.data);
    pages += 1;
    check(pages < 50, 'more than 50 pages: pagination does not end');
    page = await page.nextPage();
    if (!page.data) break;
  }
  return { items, pages };
}

/// The rejection of a call that must fail.
async function failure(promise) {
  try {
    const r = await promise;
    throw new StepFailure(`expected an error, got ${JSON.stringify(r && (r.data || r))}`);
  } catch (e) {
    if (e instanceof StepFailure) throw e;
    return e;
  }
}

function errorShape(e, status) {
  check(e.status === status, `expected HTTP ${status}, got ${e.status}: ${describe(e)}`);
  const body = e.response.body;
  check(body && Array.isArray(body.errors) && typeof body.errors[0].message === 'string'
        && body.errors[0].message.length > 0, `no errors[0].message in ${e.response.text}`);
  return body.errors[0].message;
}

async function main() {
  const binary = path.resolve(process.argv[2] || path.join(__dirname, '..', '..', 'target', 'debug', 'pushgate'));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'asana-node-compat-'));
  const timer = setTimeout(() => {
    console.log(`FAIL - overall timeout of ${OVERALL_TIMEOUT_MS / 1000}s exceeded`);
    process.exit(1);
  }, OVERALL_TIMEOUT_MS);
  let passed = 0;
  let sandbox = null;
  const ctx = {};
  const step = async (name, fn) => {
    try {
      const detail = await fn();
      passed += 1;
      console.log(`ok ${passed} - ${name}${detail ? ': ' + detail : ''}`);
    } catch (e) {
      console.log(`FAIL ${passed + 1} - ${name}: ${describe(e)}`);
      throw e;
    }
  };
  try {
    await step('start sandbox and read handshake', async () => {
      const { info, child } = await startSandbox(binary, path.join(tmp, 'sandbox.json'));
      sandbox = child;
      for (const k of ['base_url', 'token', 'workspace', 'projects', 'custom_fields', 'users']) {
        check(k in info, `handshake lacks ${k}: ${JSON.stringify(info)}`);
      }
      ctx.info = info;
      // The README's setup, pointed at the sandbox.
      const client = Asana.ApiClient.instance;
      client.basePath = info.base_url;
      client.authentications.token.accessToken = info.token;
      ctx.tasks = new Asana.TasksApi();
      ctx.stories = new Asana.StoriesApi();
      ctx.projects = new Asana.ProjectsApi();
      ctx.workspaces = new Asana.WorkspacesApi();
      ctx.users = new Asana.UsersApi();
      ctx.sections = new Asana.SectionsApi();
      ctx.events = new Asana.EventsApi();
      return `sandbox up at ${info.base_url}`;
    });

    await step('discover the workspace and its projects', async () => {
      const ws = await ctx.workspaces.getWorkspaces({ limit: 10 });
      check(ws.data.length === 1 && ws.data[0].gid === ctx.info.workspace, `workspaces: ${JSON.stringify(ws.data)}`);
      const one = await ctx.workspaces.getWorkspace(ctx.info.workspace, { opt_fields: 'name,is_organization' });
      check(one.data.name && one.data.is_organization === false, `workspace: ${JSON.stringify(one.data)}`);
      const { items } = await allPages(ctx.projects.getProjectsForWorkspace(ctx.info.workspace, { limit: PAGE_LIMIT }));
      const byName = Object.fromEntries(items.map((p) => [p.name, p.gid]));
      for (const n of ['Lock Beta Release', 'Beta Push Tasks', 'Lock Production Release']) {
        check(byName[n] === ctx.info.projects[n], `${n}: ${JSON.stringify(byName)}`);
      }
      ctx.p1 = byName['Lock Beta Release'];
      ctx.p2 = byName['Beta Push Tasks'];
      ctx.lockProd = byName['Lock Production Release'];
      return `${items.length} projects`;
    });

    await step('createTask asking nested opt_fields', async () => {
      const result = await ctx.tasks.createTask(
        { data: { name: 'Node compat: main task', notes: 'created by tests/node', projects: [ctx.p1], assignee: 'me' } },
        { opt_fields: 'name,completed,projects.gid,projects.name,memberships.project.gid,assignee.email' },
      );
      const t = result.data;
      check(t.gid && t.name === 'Node compat: main task' && t.completed === false, `task: ${JSON.stringify(t)}`);
      check(JSON.stringify(t.projects) === JSON.stringify([{ gid: ctx.p1, name: 'Lock Beta Release' }]),
        `projects: ${JSON.stringify(t.projects)}`);
      check(t.memberships[0].project.gid === ctx.p1, `memberships: ${JSON.stringify(t.memberships)}`);
      check(t.assignee.email === 'sandbox@pushgate.invalid', `assignee: ${JSON.stringify(t.assignee)}`);
      check(t.notes === undefined, `only the asked fields come back: ${JSON.stringify(t)}`);
      ctx.task = t.gid;
      ctx.created = [t.gid];
      for (let i = 0; i < 4; i++) {
        const f = await ctx.tasks.createTask({ data: { name: `Node compat: filler ${i}`, projects: [ctx.p1] } }, {});
        ctx.created.push(f.data.gid);
      }
      return `task ${t.gid} and 4 more`;
    });

    await step('page through the project (getTasksForProject, nextPage)', async () => {
      const { items, pages } = await allPages(ctx.tasks.getTasksForProject(ctx.p1, { limit: PAGE_LIMIT }));
      const gids = items.map((t) => t.gid);
      check(pages >= 3, `expected 3+ pages, got ${pages}`);
      check(JSON.stringify(gids) === JSON.stringify(ctx.created), `order and uniqueness: ${gids} vs ${ctx.created}`);
      check(items.every((t) => t.resource_type === 'task' && t.resource_subtype === 'default_task'), 'compact tasks');
      return `${pages} pages, ${gids.length} tasks`;
    });

    await step('page through GET /tasks (getTasks, nextPage)', async () => {
      const { items, pages } = await allPages(ctx.tasks.getTasks({ project: ctx.p1, limit: PAGE_LIMIT }));
      check(pages >= 3 && items.length === ctx.created.length, `${pages} pages, ${items.length} items`);
      const mine = await ctx.tasks.getTasks({ assignee: 'me', workspace: ctx.info.workspace, limit: 100 });
      check(mine.data.length === 1 && mine.data[0].gid === ctx.task, `assignee=me: ${JSON.stringify(mine.data)}`);
      return `${pages} pages; assignee+workspace finds the main task`;
    });

    await step('comment with html_text', async () => {
      const r = await ctx.stories.createStoryForTask(
        { data: { html_text: '<body>Looks <strong>good</strong> &amp; ships</body>' } }, ctx.task, {});
      check(r.data.text === 'Looks good & ships' && r.data.resource_subtype === 'comment_added', `story: ${JSON.stringify(r.data)}`);
      ctx.comment = r.data.gid;
      return `story ${r.data.gid}`;
    });

    await step('complete the task', async () => {
      const r = await ctx.tasks.updateTask({ data: { completed: true } }, ctx.task, { opt_fields: 'completed,completed_by.name' });
      check(r.data.completed === true && r.data.completed_by.name === 'Sandbox User', `task: ${JSON.stringify(r.data)}`);
      return 'completed';
    });

    await step('move it between projects (addProjectForTask, removeProjectForTask)', async () => {
      const added = await ctx.tasks.addProjectForTask({ data: { project: ctx.p2 } }, ctx.task);
      check(JSON.stringify(added.data) === '{}', `addProject: ${JSON.stringify(added)}`);
      await ctx.tasks.removeProjectForTask({ data: { project: ctx.p1 } }, ctx.task);
      const t = await ctx.tasks.getTask(ctx.task, { opt_fields: 'projects.name' });
      check(JSON.stringify(t.data.projects) === JSON.stringify([{ gid: ctx.p2, name: 'Beta Push Tasks' }]),
        `projects: ${JSON.stringify(t.data.projects)}`);
      const left = await ctx.tasks.getTasksForProject(ctx.p1, { limit: 100 });
      check(!left.data.some((x) => x.gid === ctx.task), 'still listed in the first project');
      return "now only in 'Beta Push Tasks'";
    });

    await step('sections and subtasks', async () => {
      const sec = await ctx.sections.createSectionForProject(ctx.p2, { body: { data: { name: 'Shipped' } } });
      check(sec.data.name === 'Shipped', `section: ${JSON.stringify(sec.data)}`);
      await ctx.sections.addTaskForSection(sec.data.gid, { body: { data: { task: ctx.task } } });
      const list = await ctx.sections.getSectionsForProject(ctx.p2, { limit: 10 });
      check(list.data.map((s) => s.gid).includes(sec.data.gid), `sections: ${JSON.stringify(list.data)}`);
      const inSection = await ctx.tasks.getTasks({ section: sec.data.gid, limit: 10 });
      check(inSection.data.length === 1 && inSection.data[0].gid === ctx.task, `section tasks: ${JSON.stringify(inSection.data)}`);
      const sub = await ctx.tasks.createSubtaskForTask({ data: { name: 'check the dashboards' } }, ctx.task, {});
      const subs = await ctx.tasks.getSubtasksForTask(ctx.task, { limit: 10 });
      check(subs.data.length === 1 && subs.data[0].gid === sub.data.gid, `subtasks: ${JSON.stringify(subs.data)}`);
      return `section ${sec.data.gid}, subtask ${sub.data.gid}`;
    });

    await step('an approval task approved by another person', async () => {
      const approverEmail = 'approver@pushgate.invalid';
      const approver = ctx.info.users[approverEmail];
      check(approver && approver.token, `no approver in the handshake: ${JSON.stringify(ctx.info.users)}`);
      const created = await ctx.tasks.createTask({
        data: { name: 'Approve prod push', resource_subtype: 'approval', projects: [ctx.lockProd], assignee: approverEmail },
      }, { opt_fields: 'resource_subtype,approval_status,completed' });
      check(created.data.approval_status === 'pending' && created.data.completed === false, `new approval: ${JSON.stringify(created.data)}`);
      // A second client, as the approver.
      const theirs = new Asana.ApiClient();
      theirs.basePath = ctx.info.base_url;
      theirs.authentications.token.accessToken = approver.token;
      await new Asana.TasksApi(theirs).updateTask({ data: { approval_status: 'approved' } }, created.data.gid, {});
      const t = await ctx.tasks.getTask(created.data.gid, { opt_fields: 'approval_status,completed,completed_by.email' });
      check(t.data.approval_status === 'approved' && t.data.completed === true, `approved: ${JSON.stringify(t.data)}`);
      check(t.data.completed_by.email === approverEmail, `decided by: ${JSON.stringify(t.data.completed_by)}`);
      const who = await ctx.users.getUser(t.data.completed_by.gid, { opt_fields: 'email' });
      check(who.data.email === approverEmail, `user: ${JSON.stringify(who.data)}`);
      const stories = await ctx.stories.getStoriesForTask(created.data.gid, {
        opt_fields: 'resource_subtype,old_approval_status,new_approval_status,created_by.name', limit: 100 });
      const decided = stories.data.filter((s) => s.resource_subtype === 'approval_status_changed');
      check(decided.length === 1 && decided[0].old_approval_status === 'pending' && decided[0].new_approval_status === 'approved'
        && decided[0].created_by.name === 'Avery Approver', `stories: ${JSON.stringify(stories.data)}`);
      return `approved by ${approverEmail}`;
    });

    await step('read events with a sync token (the README loop)', async () => {
      const opts = { sync: '' };
      const first = await failure(ctx.events.getEvents(ctx.p1, opts));
      check(first.status === 412 && typeof first.response.body.sync === 'string', `first call: ${describe(first)}`);
      opts.sync = first.response.body.sync;
      const t = await ctx.tasks.createTask({ data: { name: 'Node compat: evented', projects: [ctx.p1] } }, {});
      await ctx.stories.createStoryForTask({ data: { text: 'an event' } }, t.data.gid, {});
      const result = await ctx.events.getEvents(ctx.p1, opts);
      const seen = result.data.map((e) => `${e.resource.resource_type}:${e.action}`);
      check(seen[0] === 'task:added' && result.data[0].resource.gid === t.data.gid
        && result.data[0].parent.gid === ctx.p1, `events: ${JSON.stringify(result.data)}`);
      check(seen.filter((x) => x === 'story:added').length === 2, `the creation story and the comment: ${seen}`);
      check(result._response.has_more === false, `has_more: ${JSON.stringify(result._response)}`);
      opts.sync = result._response.sync;
      const again = await ctx.events.getEvents(ctx.p1, opts);
      check(again.data.length === 0, `nothing new: ${JSON.stringify(again.data)}`);
      return `${seen.length} events: ${seen.join(', ')}`;
    });

    await step('error shapes: 401, 404, 400', async () => {
      const stranger = new Asana.ApiClient();
      stranger.basePath = ctx.info.base_url;
      stranger.authentications.token.accessToken = 'not-a-token';
      const e401 = await failure(new Asana.UsersApi(stranger).getUser('me', {}));
      errorShape(e401, 401);
      const e404 = await failure(ctx.tasks.getTask('999', {}));
      errorShape(e404, 404);
      const e400 = await failure(ctx.tasks.getTasks({ limit: 10 }));
      const msg = errorShape(e400, 400);
      check(/project/.test(msg), `the 400 says what is missing: ${msg}`);
      const bad = await failure(ctx.tasks.getTask(ctx.task, { opt_fields: 'projects.colour' }));
      check(/projects\.colour/.test(errorShape(bad, 400)), 'the 400 names the path');
      return '401, 404, 400 with errors[0].message';
    });
  } catch (e) {
    if (!(e instanceof StepFailure)) console.log(describe(e));
    console.log(`${passed} passed, 1 failed`);
    process.exitCode = 1;
  } finally {
    clearTimeout(timer);
    if (sandbox) sandbox.kill('SIGTERM');
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  if (!process.exitCode) console.log(`${passed} passed, 0 failed`);
}

main();
