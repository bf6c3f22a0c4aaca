// The on-call page in Debian's headless Chromium (playwright-core, no
// browser download): driven by tests/it/page_browser.rs, which starts the
// real daemon against the sandbox and passes one JSON argument:
//   { scenario: "tour" | "token", url, shots, go?, stageGo?, token?, pushed?, fixed? }
// Every wait is on a condition in the page (waitForFunction / waitForURL),
// never a fixed delay. Exits 1 with the first failed expectation; a page
// error, a dialog, a console error (a blocked script or style included)
// or `window.__pwned` being set anywhere fails the run.

"use strict";

const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const args = JSON.parse(process.argv[2]);
const problems = [];
let checks = 0;

function expect(cond, what) {
  checks++;
  if (!cond) {
    throw new Error("expected: " + what);
  }
}

function executable() {
  for (const p of [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"]) {
    if (p && fs.existsSync(p)) { return p; }
  }
  throw new Error("no chromium found (apt-get install chromium)");
}

async function launch() {
  return chromium.launch({
    executablePath: executable(),
    headless: true,
    // A closed network: nothing of Chromium's own may try to go out.
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/// A page that records what must never happen.
async function open(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(60000);
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("dialog", (d) => { problems.push("a dialog opened: " + d.message()); d.dismiss(); });
  page.on("console", (m) => {
    // A 401 the test asked for is logged as a failed load: that is expected.
    if (m.type() === "error" && !(args.scenario === "token" && /status of 401/.test(m.text()))) {
      problems.push("console error (" + page.url() + ", after " + checks + " checks): " + m.text());
    }
  });
  return page;
}

async function shot(page, name) {
  fs.mkdirSync(args.shots, { recursive: true });
  // caret "initial": Playwright would otherwise inject a stylesheet to
  // hide the caret, which the page's CSP rightly refuses.
  await page.screenshot({ path: path.join(args.shots, name), fullPage: true, caret: "initial" });
}

/// What hostile text must never have become: script that ran, elements
/// or handlers from text, javascript: links, bidi overrides as characters.
async function inert(page, where) {
  const seen = await page.evaluate(() => ({
    pwned: window.__pwned,
    handlers: document.querySelectorAll("[onerror], [onload], [onclick]").length,
    img: document.querySelectorAll("img").length,
    jsLinks: Array.from(document.querySelectorAll("a[href]")).filter((a) => /^\s*javascript:/i.test(a.getAttribute("href"))).length,
    scripts: document.querySelectorAll("script").length,
    bidi: document.body.innerText.includes("\u202e"),
  }));
  expect(seen.pwned === undefined, where + ": no hostile script ran (window.__pwned is " + seen.pwned + ")");
  expect(seen.handlers === 0, where + ": no element carries an event handler");
  expect(seen.img === 0, where + ": no <img> made from text");
  expect(seen.jsLinks === 0, where + ": no javascript: link");
  expect(seen.scripts === 1, where + ": only the page's own script");
  expect(!seen.bidi, where + ": no raw bidi override");
}

/// waitForFunction across the page's own reloads (the live view reloads
/// a page whose push ended): a wait cut by a navigation is made again.
async function until(page, fn, arg) {
  for (let i = 0; ; i++) {
    try {
      return await page.waitForFunction(fn, arg);
    } catch (e) {
      if (i < 20 && /context was destroyed|navigation|Target closed/i.test(String(e))) {
        await page.waitForLoadState("load");
        continue;
      }
      throw e;
    }
  }
}

async function text(page, selector) {
  return (await page.locator(selector).first().textContent()) || "";
}

async function tour() {
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await open(context);
  const beta = 'tr[data-live="repo/beta"]';

  // A scheduled push of beta is waiting in its build.
  await page.goto(args.url + "/");
  await page.waitForFunction((sel) => {
    const row = document.querySelector(sel);
    return row !== null && row.querySelector(".live-state").textContent === "pushing";
  }, beta);
  expect((await text(page, beta + " .live-progress")).startsWith("build"), "beta is building");
  await inert(page, "the overview");
  const prod = 'tr[data-live="repo/prod"]';
  expect((await page.getAttribute(prod, "data-state")) === "held", "prod is held");
  expect((await text(page, prod)).includes("held by 1 lock"), "prod's verdict names the lock");
  const lock = page.locator(prod + " a.lock").first();
  expect((await lock.textContent()).includes("<script>window.__pwned=1</script>"), "the lock's hostile name shows as text");
  expect(/\/0\/\d+\/\d+$/.test(await lock.getAttribute("href")), "the lock links to Asana by its gids");
  expect((await text(page, prod)).includes("Mallory <script>"), "its assignee, as text");

  // The build goes on; beta-3's stage waits: the row updates in place.
  await page.evaluate(() => { window.__kept = "no reload"; });
  fs.writeFileSync(args.go, "go\n");
  await page.waitForFunction((sel) => {
    const t = document.querySelector(sel + " .live-progress");
    return t !== null && /^stage: 2 of 3 hosts staged, [0-9.]+ (B|KiB|MiB) sent/.test(t.textContent);
  }, beta);
  expect((await page.evaluate(() => window.__kept)) === "no reload", "the update came without a reload");
  const bar = await page.evaluate((sel) => {
    const p = document.querySelector(sel + " progress.live-bar");
    return { value: p.value, max: p.max, hidden: p.hidden };
  }, beta);
  expect(bar.value === 2 && bar.max === 3 && !bar.hidden, "the progress bar shows 2 of 3: " + JSON.stringify(bar));
  const sent = await text(page, beta + " .live-progress");
  expect(!/ 0 B sent/.test(sent), "bytes were sent: " + sent);
  await shot(page, "overview-live.png");

  // The running push's own page, while it runs.
  const running = await open(context);
  const runLink = await page.getAttribute(beta + " a[href^='/run/']", "href");
  await running.goto(args.url + runLink);
  for (const step of ["gate", "record", "build", "stage"]) {
    expect(await running.locator('#steps tr[data-step="' + step + '"]').count() === 1, "the running push's timeline has " + step);
  }
  expect((await text(running, "#outcome")) === "running", "it is running");
  await inert(running, "the running push's page");

  // The stage ends, the push closes: the overview reloads itself with
  // what is deployed now.
  fs.writeFileSync(args.stageGo, "go\n");
  await until(page, ([sel, short]) => {
    const row = document.querySelector(sel);
    return row !== null && !row.hasAttribute("data-running") && row.textContent.includes(short);
  }, [beta, args.pushed.slice(0, 7)]);
  // What decide says now: nothing new (or, for the instant a scheduled
  // tick holds the lock to look, that a run is running).
  const after = await page.getAttribute(beta, "data-state");
  expect(after === "open" || after === "pushing", "beta after its push: " + after);
  await until(running, () => {
    const o = document.querySelector("#outcome");
    return o !== null && o.textContent === "success" && !document.body.hasAttribute("data-running");
  });
  await inert(page, "the overview after the push");
  await shot(page, "overview.png");

  // The run page: a bar per step on a time axis, every host, the
  // changelog, the Asana writes.
  for (const step of ["gate", "record", "build", "stage", "switch", "close"]) {
    expect(await running.locator('#steps tr[data-step="' + step + '"]').count() === 1, "the timeline has " + step);
  }
  const timeline = await running.evaluate(() => {
    const svg = document.querySelector('figure[data-chart="timeline"] svg');
    const texts = Array.from(svg.querySelectorAll("text")).map((t) => t.textContent.trim());
    return { texts, bars: svg.querySelectorAll("rect").length };
  });
  expect(timeline.texts.includes("seconds since the run started (s)"), "the timeline's time axis: " + timeline.texts);
  expect(["gate", "build", "stage", "switch", "close"].every((s) => timeline.texts.includes(s)), "a row per step: " + timeline.texts);
  expect(timeline.bars >= 6, "bars on it: " + timeline.bars);
  expect(await running.locator("#hosts tbody tr").count() === 3, "three hosts");
  expect((await text(running, "#changelog")).includes("Live <script>window.__pwned=6</script>"), "the changelog, as text");
  expect(await running.locator('#writes tr[data-state="queued"]').count() === 0, "no Asana write queued");
  expect(/\/0\/\d+\/\d+$/.test(await running.getAttribute("#push-task", "href")), "the push task, by its gids");
  await inert(running, "the run page");
  await shot(running, "run.png");

  // The cluster: its history, charts with axes, units and legends.
  await page.goto(args.url + "/cluster/repo/beta?since=");
  const charts = await page.evaluate(() => {
    const out = {};
    for (const f of document.querySelectorAll("figure.chart")) {
      const svg = f.querySelector("svg");
      out[f.getAttribute("data-chart")] = svg ? {
        texts: Array.from(svg.querySelectorAll("text")).map((t) => t.textContent.trim()),
        lines: svg.querySelectorAll("line, polyline, path").length,
        width: svg.getBoundingClientRect().width,
      } : null;
    }
    return out;
  });
  expect(charts.success && charts.success.texts.includes("successful pushes (%)"), "the success chart's y axis: " + JSON.stringify(charts.success));
  expect(charts.success.texts.some((t) => /^day \(/.test(t)) && charts.success.texts.includes("100%"), "its x axis and ticks");
  expect(charts.success.texts.includes("some failed (the bar: the share that succeeded)"), "its legend");
  expect(charts.duration && charts.duration.texts.includes("duration (s)"), "the duration chart's y axis");
  expect(charts.duration.texts.some((t) => /^median of successful pushes: [0-9.]+ s$/.test(t)), "the median, in the legend: " + charts.duration.texts);
  expect(charts.duration.lines > 4 && charts.duration.width > 300, "axes drawn, and visible");
  expect(charts.holds && charts.holds.texts.includes("build-failed") && charts.holds.texts.includes("held runs"), "holds by reason: " + JSON.stringify(charts.holds));
  expect(await page.locator("#runs tbody tr").count() === 4, "four runs");
  await inert(page, "the cluster page");
  await shot(page, "cluster.png");

  // Filters: by outcome.
  await page.selectOption('select[name="outcome"]', "failed");
  await Promise.all([page.waitForURL(/outcome=failed/), page.click('form.filters button[type="submit"]')]);
  expect(await page.locator("#runs tbody tr").count() === 1, "one failed run");
  await page.click("#runs tbody tr a[href^='/run/']");
  await page.waitForURL(/\/run\/repo\/beta\//);
  const tail = await text(page, "#tail");
  expect(tail.includes("<script>window.__pwned=5</script> the build broke"), "the output tail, as text: " + tail);
  expect((await page.locator('#steps tr[data-step="build"]').textContent()).includes("(failed)"), "the failed step");
  await inert(page, "the failed run");

  // The feeds answer in the browser too.
  const cc = await page.goto(args.url + "/cc.xml");
  expect(cc.status() === 200 && (await cc.text()).includes('lastBuildStatus="Success"'), "cc.xml");
  const badge = await page.goto(args.url + "/badge/repo/prod.svg");
  expect(badge.status() === 200 && (await badge.text()).includes(">held</text>"), "prod's badge");

  // On a phone (iPhone-sized viewport): the overview is one card per
  // cluster, nothing wider than the screen, each value under its label.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const small = await open(phone);
  await small.goto(args.url + "/");
  const fit = await small.evaluate((sel) => {
    const row = document.querySelector(sel);
    const state = row.querySelector('td[data-label="State"]');
    return {
      wide: document.documentElement.scrollWidth,
      screen: window.innerWidth,
      head: getComputedStyle(document.querySelector("#clusters thead")).display,
      row: getComputedStyle(row).display,
      label: getComputedStyle(state, "::before").content,
      rowWidth: row.getBoundingClientRect().width,
    };
  }, beta);
  expect(fit.wide <= fit.screen, "nothing wider than the phone's screen: " + JSON.stringify(fit));
  expect(fit.head === "none" && fit.row === "block", "a card per cluster, no table header: " + JSON.stringify(fit));
  expect(fit.label === '"State"', "each value under its label: " + JSON.stringify(fit));
  expect(fit.rowWidth > 300, "the card takes the screen's width: " + JSON.stringify(fit));
  await inert(small, "the overview on a phone");
  await shot(small, "overview-phone.png");
  // The other pages: their tables scroll within the screen, the charts shrink.
  for (const where of ["/cluster/repo/beta?since=", runLink]) {
    await small.goto(args.url + where);
    const w = await small.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
    expect(w[0] <= w[1], where + " on a phone is no wider than its screen: " + w);
    await inert(small, where + " on a phone");
  }

  await browser.close();
}

async function token() {
  const browser = await launch();
  const context = await browser.newContext({ viewport: { width: 1200, height: 700 } });
  const page = await open(context);
  for (const p of ["/", "/cluster/repo/beta", "/api/status.json", "/metrics"]) {
    const r = await page.goto(args.url + p);
    expect(r.status() === 401, p + " without the token is 401, not " + r.status());
  }
  expect((await text(page, "body")).length > 0, "says why");
  await page.goto(args.url + "/");
  expect((await text(page, "h1")) === "This page needs its token", "the 401 page says what it needs");
  await shot(page, "token-needed.png");
  // The link a person is given: the page, then without the token.
  const r = await page.goto(args.url + "/?token=" + encodeURIComponent(args.token));
  expect(r.status() === 200, "the ?token= link opens the page");
  expect(new URL(page.url()).search === "", "the token is gone from the address bar: " + page.url());
  expect(await page.locator("#clusters").count() === 1, "the overview");
  expect(!(await page.evaluate(() => document.cookie)).includes("pushgate_page"), "the cookie is HttpOnly");
  const again = await page.goto(args.url + "/cluster/repo/beta");
  expect(again.status() === 200, "the cookie lets the browser in");
  await page.waitForFunction(() => document.querySelector("[data-chart]") !== null);
  // Another browser, without the cookie: nothing.
  const other = await browser.newContext();
  const stranger = await open(other);
  const denied = await stranger.goto(args.url + "/cluster/repo/beta");
  expect(denied.status() === 401, "a browser without the cookie gets nothing");
  const wrong = await stranger.goto(args.url + "/?token=not-the-token-0123456789");
  expect(wrong.status() === 401, "a wrong token gets nothing");
  await browser.close();
  // The 401 page loads nothing it needs from elsewhere: no problem recorded.
}

(async () => {
  if (args.scenario === "tour") {
    await tour();
  } else if (args.scenario === "token") {
    await token();
  } else {
    throw new Error("unknown scenario " + args.scenario);
  }
  if (problems.length) {
    throw new Error(problems.join("\n"));
  }
  console.log(args.scenario + ": " + checks + " checks passed");
})().catch((e) => {
  console.error("FAIL " + (e && e.stack ? e.stack : e));
  if (problems.length) { console.error(problems.join("\n")); }
  process.exit(1);
});
