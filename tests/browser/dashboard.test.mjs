// User story: an operator opens the requester daemon's dashboard in a browser while an agent
// delegates a job. The daemon has an API token: the operator opens /?token=<token> once (as
// `edgent dashboard` prints it), the page lands on / without the token in its address, and
// its own requests carry the cookie. Without reloading, the page shows this node's ENS name,
// the provider's ENS name among the peers, and the job as completed; it logs no errors.
//
// Real parts: `edgent mesh-sim` (the AXL API harness) and two `edgent run` daemons as
// processes (the provider on the built-in demo backend), headless Chromium from Debian
// driven by playwright-core. Run from the repo root after `cargo build` (or `cargo test`):
//
//   node --test tests/browser/
//
// Needs target/debug/edgent and /usr/bin/chromium (`apt-get install -y chromium`).
// Set EDGENT_DASHBOARD_SCREENSHOT to a path to keep a screenshot of the page.

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const EDGENT = join(ROOT, "target/debug/edgent");
const CHROMIUM = "/usr/bin/chromium";
const REQUESTER_ENS = "jetson-orin.edgent.eth";
const PROVIDER_ENS = "dell-g15.edgent.eth";
const DEMO_MODEL = "edgent-demo";
const API_TOKEN = "b4d9c0ffee0123456789abcdef0123456789abcdef0123456789abcdef012345";
// The page polls every 2 s: allow a few rounds (and a loaded machine) before failing.
const UI_TIMEOUT_MS = 10_000;

const children = [];
const dirs = [];

after(async () => {
  for (const c of children.reverse()) await stop(c);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Stop a child: SIGTERM, then SIGKILL if it has not exited within 10 s. */
async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((res) => child.once("exit", res));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

function tempDir(prefix) {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

/** A free TCP port on 127.0.0.1 (bound and released). */
function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** `edgent mesh-sim --nodes n`: resolves to [{id, url}] as it prints them. */
function startMesh(n) {
  const child = spawn(EDGENT, ["mesh-sim", "--nodes", String(n), "--base-port", "0"], {
    env: { PATH: process.env.PATH, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((res, rej) => {
    const nodes = [];
    const lines = createInterface({ input: child.stdout });
    lines.on("line", (line) => {
      const id = /id=(\S+)/.exec(line);
      const url = /url=(\S+)/.exec(line);
      if (id && url) nodes.push({ id: id[1], url: url[1] });
      if (nodes.length === n) res(nodes);
    });
    child.once("exit", (code) => rej(new Error(`mesh-sim exited with ${code} before printing ${n} nodes`)));
    child.once("error", rej);
  });
}

/** `edgent run` with `env`, on a fresh port; resolves to its base URL once /healthz answers. */
async function startDaemon(name, env) {
  const dataDir = tempDir(`edgent-browser-${name}-`);
  const port = await freePort();
  const log = join(dataDir, "daemon.log");
  const child = spawn(EDGENT, ["run"], {
    env: {
      PATH: process.env.PATH,
      EDGENT_HTTP_ADDR: `127.0.0.1:${port}`,
      EDGENT_DATA_DIR: dataDir,
      EDGENT_ENV_FILE: join(dataDir, "no.env"),
      EDGENT_PAYMENTS: "off",
      AXL_SPAWN: "false",
      DISCOVERY_WINDOW_MS: "1500",
      RUST_LOG: "info",
      ...env,
    },
    stdio: ["ignore", "ignore", openSync(log, "a")],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  const start = Date.now();
  for (;;) {
    if (child.exitCode !== null) {
      throw new Error(`${name} daemon exited with ${child.exitCode}; log:\n${readFileSync(log, "utf8")}`);
    }
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() - start > 60_000) {
      throw new Error(`${name} daemon did not answer /healthz within 60 s; log:\n${readFileSync(log, "utf8")}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { url, log };
}

/** Text of the cells of the table body `#id`, one array per row. */
async function rows(page, id) {
  return page.$$eval(`#${id} tr`, (trs) =>
    trs.map((tr) => ({ jobId: tr.dataset.jobId, cells: [...tr.children].map((td) => td.textContent.trim()) })),
  );
}

test("the dashboard shows both nodes' ENS names and the completed job, with no errors", { timeout: 120_000 }, async () => {
  assert.ok(
    existsSync(EDGENT),
    `${EDGENT} is missing: build it first (cargo build, or cargo test, which scripts/test.sh runs before this test)`,
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);

  const mesh = await startMesh(2);
  const provider = await startDaemon("provider", {
    AXL_API_URL: mesh[1].url,
    EDGENT_ROLE: "provider",
    EDGENT_ENS_NAME: PROVIDER_ENS,
    INFERENCE_BACKEND: "demo",
  });
  const requester = await startDaemon("requester", {
    AXL_API_URL: mesh[0].url,
    EDGENT_ROLE: "requester",
    EDGENT_ENS_NAME: REQUESTER_ENS,
    EDGENT_API_TOKEN: API_TOKEN,
  });

  const profile = tempDir("edgent-chromium-profile-");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
    viewport: { width: 1280, height: 800 },
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
    });

    // Open the page before the job exists: it must pick the job up by polling. The token
    // goes in once; the daemon answers with its cookie and sends the page to /.
    await page.goto(`${requester.url}/?token=${API_TOKEN}`);
    assert.equal(page.url(), `${requester.url}/`);
    const cookies = await context.cookies(requester.url);
    const cookie = cookies.find((c) => c.name === "edgent_token");
    assert.ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookies));
    await page.locator("#me", { hasText: REQUESTER_ENS }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(await page.locator("#conn").textContent(), /live/);
    await page.locator("#jobs", { hasText: "no jobs yet" }).waitFor({ timeout: UI_TIMEOUT_MS });

    const resp = await fetch(`${requester.url}/delegate`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_TOKEN}` },
      body: JSON.stringify({ model: DEMO_MODEL, prompt: "hello from the browser test" }),
    });
    const body = await resp.json();
    assert.equal(resp.status, 200, JSON.stringify(body));
    const jobId = body.job_id;

    // The job row, by its id, reaches `completed` within a few polling rounds.
    const row = page.locator(`#jobs tr[data-job-id="${jobId}"]`);
    await row.locator(".state", { hasText: "completed" }).waitFor({ timeout: UI_TIMEOUT_MS });
    const jobRows = await rows(page, "jobs");
    const mine = jobRows.find((r) => r.jobId === jobId);
    assert.ok(mine, `no row for ${jobId}: ${JSON.stringify(jobRows)}`);
    const [, side, state, peer, model, output] = mine.cells;
    assert.equal(side, "requester");
    assert.equal(state, "completed");
    assert.equal(peer, PROVIDER_ENS);
    assert.equal(model, DEMO_MODEL);
    assert.equal(output, body.output.trim());

    // The provider, by ENS name, in the peers table (learnt from its ad).
    await page.locator("#peers td.ens", { hasText: PROVIDER_ENS }).waitFor({ timeout: UI_TIMEOUT_MS });
    const peerRows = await rows(page, "peers");
    const p = peerRows.find((r) => r.cells[0] === PROVIDER_ENS);
    assert.ok(p, JSON.stringify(peerRows));
    assert.ok(mesh[1].id.startsWith(p.cells[1].replace("…", "")), `peer id ${p.cells[1]} vs ${mesh[1].id}`);
    assert.match(p.cells[2], /^up/);
    assert.match(p.cells[3], new RegExp(DEMO_MODEL));
    assert.match(await page.title(), new RegExp(REQUESTER_ENS));

    // Another polling round passes without errors, and the page still says it is live.
    await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/status"), { timeout: UI_TIMEOUT_MS }),
      page.waitForResponse((r) => r.url().includes("/jobs?"), { timeout: UI_TIMEOUT_MS }),
    ]);
    assert.match(await page.locator("#conn").textContent(), /live/);
    const shot = process.env.EDGENT_DASHBOARD_SCREENSHOT;
    if (shot) await page.screenshot({ path: shot, fullPage: true });
    assert.deepEqual(problems, [], "the page logged errors or failed requests");
  } finally {
    await context.close();
  }
});

// User story: an operator runs `edgent demo` (the paid flow on a local anvil chain) and opens
// the dashboard it serves: the paid job's row shows the release with the amount, linking to
// the release transaction the demo printed.
test("the paid demo's dashboard links the job to its release transaction", async () => {
  const child = spawn(EDGENT, ["demo", "--http-addr", "127.0.0.1:0"], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, EDGENT_ENV_FILE: join(tempDir("edgent-demo-env-"), "none.env"), OLLAMA_URL: "http://127.0.0.1:9" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout });
  let url, tx, jobId;
  const printed = [];
  for await (const line of lines) {
    printed.push(line);
    const rel = line.match(/released to the provider .*tx (0x[0-9a-f]{64})/);
    if (rel) tx = rel[1];
    const job = line.match(/^\s+job (0x[0-9a-f]{64})/);
    if (job) jobId = job[1];
    const dash = line.match(/^dashboard: (http:\/\/\S+)\//);
    if (dash) {
      url = dash[1];
      break;
    }
  }
  assert.ok(url && tx && jobId, `the demo did not print a paid job:\n${printed.join("\n")}`);

  const profile = tempDir("edgent-chromium-profile-");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()}`);
    });
    await page.goto(`${url}/`);
    const link = page.locator(`#jobs tr[data-job-id="${jobId}"] a.pay`);
    await link.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal((await link.textContent()).trim(), "released · 0.01 USDC");
    assert.ok((await link.getAttribute("href")).endsWith(tx), await link.getAttribute("href"));
    assert.match(await link.getAttribute("title"), /proof verified/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
