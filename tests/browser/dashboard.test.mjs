// User stories: an operator opens the requester daemon's dashboard in a browser, on a
// desk and on a phone, while agents send it requests, paid in USDC, and sees as pictures:
// the mesh (this node, its peers, the hub and spoke it hangs off, who serves which model, a
// failed-over job's path, nodes leaving and coming back), the latency of each request
// (local and mesh, first token and total), the money (the wallet, spent and earned, a stake
// open with its deadline, the refund of the failed-over attempt's stake), the providers'
// scores and why, and every request.
// The daemon has an API token: the operator opens /?token=<token> once (as `edgent
// dashboard` prints it), the page lands on / without the token in its address, and its
// own requests carry the cookie. The page polls only what changed (`/jobs?since=`).
//
// Real parts: `edgent mesh-sim` (the AXL API harness, five nodes in a tree), `edgent
// local-chain` (anvil from npm, MockUSDC and the escrow v4, the requester's wallet
// funded), three `edgent run` daemons as processes, all paid through that escrow (a
// requester; a provider on the built-in demo backend; a provider whose Ollama lists the
// model as loaded and then fails every generation, so the job fails over and its stake is
// refunded, and which serves a second model only when the test says so, so a stake stays
// open meanwhile), a small Ollama-API server in this file for the requester's local
// Ollama and the failing provider's, the real prover, `edgent demo` (anvil, the escrow,
// the prover, two nodes) for its paid job, headless Chromium from Debian driven by
// playwright-core. Run from the repo
// root after `cargo build` (or `cargo test`):
//
//   node --test tests/browser/
//
// Needs the debug build of edgent (target/debug/edgent, or under CARGO_TARGET_DIR; EDGENT_BIN
// names another) and /usr/bin/chromium (`apt-get install -y chromium`).
// Screenshots go to EDGENT_DASHBOARD_SCREENSHOTS (default target/dashboard-screenshots);
// docs/screenshots/ holds a committed set (docs/dashboard.md).

import { test, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const EDGENT =
  process.env.EDGENT_BIN ?? join(resolve(ROOT, process.env.CARGO_TARGET_DIR ?? "target"), "debug/edgent");
const CHROMIUM = "/usr/bin/chromium";
const REQUESTER_ENS = "jetson-orin.edgent.eth";
const PROVIDER_ENS = "dell-g15.edgent.eth";
// A peer's name is whatever its ad says: this one is HTML that would run if the page ever
// parsed a peer string as HTML (the test checks it shows as text and never runs).
const FLAKY_ENS = "<img/src=x/onerror=window.pwned=1>flaky.edgent.eth";
// How a peer's name is shown: no ENS here (`ENS_RPC_URL=off`), so no name is checked
// against its `axl.pubkey` record and every peer's name is marked unverified.
const PROVIDER_SHOWN = `${PROVIDER_ENS} (unverified)`;
const FLAKY_SHOWN = `${FLAKY_ENS} (unverified)`;
const DEMO_MODEL = "edgent-demo";
const LOCAL_MODEL = "tiny-local:latest";
// Served by the flaky provider only once the test opens its gate.
const GATED_MODEL = "gated-demo";
const EXPLORER = "http://explorer.invalid";
// Every paid job here costs the providers' default price: 0.01 USDC (base units).
const PRICE_UNITS = 10_000;
const SHOTS = process.env.EDGENT_DASHBOARD_SCREENSHOTS || join(ROOT, "target/dashboard-screenshots");
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

/** `edgent mesh-sim --nodes n` (and `extra` flags): resolves to [{id, url}] as it prints them. */
function startMesh(n, extra = []) {
  const child = spawn(EDGENT, ["mesh-sim", "--nodes", String(n), "--base-port", "0", ...extra], {
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

/**
 * `edgent local-chain`: anvil with MockUSDC and the escrow v4, dev accounts `fund` holding
 * 100 USDC each; resolves to the line it prints ({rpc_url, chain_id, usdc, escrow,
 * arbiter, accounts: [{index, address, key}]}).
 */
function startChain(fund) {
  const child = spawn(EDGENT, ["local-chain", "--fund", fund.join(",")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, RUST_LOG: "warn" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  children.push(child);
  return new Promise((res, rej) => {
    createInterface({ input: child.stdout }).once("line", (line) => res(JSON.parse(line)));
    child.once("exit", (code) => rej(new Error(`local-chain exited with ${code} before describing its chain`)));
    child.once("error", rej);
  });
}

/** A daemon's settings to pay (or be paid) through `chain`'s escrow with dev account `i`. */
function paidEnv(chain, i) {
  return {
    EDGENT_PAYMENTS: "on",
    CHAIN_RPC_URL: chain.rpc_url,
    CHAIN_ID: String(chain.chain_id),
    ESCROW_ADDRESS: chain.escrow,
    USDC_ADDRESS: chain.usdc,
    WALLET_PRIVATE_KEY: chain.accounts[i].key,
    EXPLORER_URL: EXPLORER,
    PAYMENT_TICK_MS: "100",
    PAYMENT_GRACE_SECS: "1",
    // Providers trust the deployment's arbiter.
    TRUSTED_ARBITERS: chain.arbiter,
  };
}

/** `edgent run` with `env`, on a fresh port; resolves to its base URL once /healthz answers. */
async function startDaemon(name, env) {
  const dataDir = tempDir(`edgent-browser-${name}-`);
  const port = await freePort();
  // Attached to a mesh-sim node: its key file, as an operator gives a real node's, so the
  // provider signs its result receipts (an unsigned result is refused).
  if (env.AXL_API_URL) {
    const r = await fetch(`${env.AXL_API_URL}/sim/key`);
    assert.equal(r.status, 200, "the sim node's key");
    const keyPath = join(dataDir, "axl-private.pem");
    writeFileSync(keyPath, await r.text());
    chmodSync(keyPath, 0o600);
  }
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
      ENS_RPC_URL: "off",
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

const servers = [];
after(() => Promise.all(servers.map((s) => new Promise((res) => s.close(res)))));

/**
 * A small Ollama API on a fresh loopback port: `/api/tags` and `/api/ps` list `models`
 * (all loaded); `/api/generate` answers a listed model with `generate(model)` (an array of
 * NDJSON objects, or {status, error}, or a promise of either) and anything else with
 * Ollama's 404.
 */
async function fakeOllama(models, generate) {
  const server = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", async () => {
      const json = (status, v) => {
        res.writeHead(status, { "content-type": "application/json; charset=utf-8" });
        res.end(JSON.stringify(v));
      };
      if (req.url === "/api/tags" || req.url === "/api/ps") {
        return json(200, { models: models.map((name) => ({ name, model: name, size: 300_000_000, details: { family: "gemma3" } })) });
      }
      if (req.url === "/api/version") return json(200, { version: "0.17.4" });
      if (req.method === "POST" && (req.url === "/api/generate" || req.url === "/api/chat")) {
        let ask = {};
        try { ask = JSON.parse(body); } catch { return json(400, { error: "bad json" }); }
        if (!models.includes(ask.model)) return json(404, { error: `model '${ask.model}' not found` });
        const out = await generate(ask.model);
        if (!Array.isArray(out)) return json(out.status, { error: out.error });
        if (ask.stream === false) return json(200, out[out.length - 1]);
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        for (const line of out) res.write(JSON.stringify(line) + "\n");
        return res.end();
      }
      json(404, { error: "not here" });
    });
  });
  servers.push(server);
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  return `http://127.0.0.1:${server.address().port}`;
}

/** Headless Chromium with a fresh profile, at `viewport`. */
function browser(viewport = { width: 1280, height: 800 }) {
  return chromium.launchPersistentContext(tempDir("edgent-chromium-profile-"), {
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
    viewport,
  });
}

/** Errors, warnings and failed requests the page logs. */
function watchProblems(page) {
  const problems = [];
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  return problems;
}

/** A screenshot of the element `sel` (or the page, or what the screen shows) under SHOTS. */
async function shot(page, name, sel, fullPage = true) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, name);
  if (sel) await page.locator(sel).screenshot({ path });
  else await page.screenshot({ path, fullPage });
  return path;
}

/** Text of the cells of the table body `#id`, one array per row. */
async function rows(page, id) {
  return page.$$eval(`#${id} tr`, (trs) =>
    trs.map((tr) => ({ jobId: tr.dataset.jobId, nodeId: tr.dataset.nodeId, side: tr.dataset.side, cells: [...tr.children].map((td) => td.textContent.trim()) })),
  );
}

/** Wait until `fn` (run in the page) returns true, re-checking after each poll. */
async function until(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: UI_TIMEOUT_MS, polling: 200 });
  } catch (e) {
    throw new Error(`the page never showed ${what}: ${e.message}`);
  }
}

test("the dashboard draws a paid five-node mesh with local, paid, failed-over and open-stake requests, on a desk and on a phone", { timeout: 300_000 }, async () => {
  assert.ok(
    existsSync(EDGENT),
    `${EDGENT} is missing: build it first (cargo build, or cargo test, which scripts/test.sh runs before this test)`,
  );
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);

  // The chain: anvil's dev account 2 is the requester's wallet (100 USDC), 3 the good
  // provider's, 4 the flaky provider's.
  const chain = await startChain([2]);
  // A peering tree: node 0 the hub (the good provider), node 1 a sub-hub (an AXL node
  // alone), node 2 a spoke of the hub (the flaky provider; with these keys, the root of
  // AXL's spanning tree), node 3 a spoke of the sub-hub (the requester), node 4 a spoke of
  // the requester (an AXL node alone, which leaves and comes back). The requester peers
  // with 1 and 4 and sees 0 and 2 through the spanning tree.
  const mesh = await startMesh(5, ["--parents", "0,0,1,3"]);
  const [HUB, SUB, FLAKY, ME, PHONE] = mesh.map((n) => n.id);
  const localOllama = await fakeOllama([LOCAL_MODEL], () => [
    { model: LOCAL_MODEL, response: "hello ", done: false },
    { model: LOCAL_MODEL, response: "from here", done: false },
    { model: LOCAL_MODEL, response: "", done: true, eval_count: 3 },
  ]);
  // The flaky provider's Ollama: the demo model fails every generation; the gated model
  // answers once the test opens the gate.
  let openGate;
  const gate = new Promise((res) => (openGate = res));
  const brokenOllama = await fakeOllama([DEMO_MODEL, GATED_MODEL], (model) => model === GATED_MODEL
    ? gate.then(() => [
      { model, response: "worth ", done: false },
      { model, response: "the wait", done: false },
      { model, response: "", done: true, eval_count: 3 },
    ])
    : { status: 500, error: "CUDA error: an illegal memory access" });
  const provider = await startDaemon("provider", {
    AXL_API_URL: mesh[0].url,
    EDGENT_ROLE: "provider",
    EDGENT_ENS_NAME: PROVIDER_ENS,
    INFERENCE_BACKEND: "demo",
    ...paidEnv(chain, 3),
  });
  const flaky = await startDaemon("flaky", {
    AXL_API_URL: mesh[2].url,
    EDGENT_ROLE: "provider",
    EDGENT_ENS_NAME: FLAKY_ENS,
    INFERENCE_BACKEND: "ollama",
    OLLAMA_URL: brokenOllama,
    ...paidEnv(chain, 4),
  });
  const requester = await startDaemon("requester", {
    AXL_API_URL: mesh[3].url,
    EDGENT_ROLE: "requester",
    EDGENT_ENS_NAME: REQUESTER_ENS,
    EDGENT_API_TOKEN: API_TOKEN,
    OLLAMA_URL: localOllama,
    // No spot checks: with payments on each check run is a paid job of its own, and the
    // pictures here count the agent's requests (spot checks: tests/it/spot_checks.rs).
    VERIFY_RATE: "0",
    VERIFY_FIRST: "0",
    ...paidEnv(chain, 2),
  });
  void provider;
  void flaky;
  const auth = { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" };
  const delegate = async (body) => {
    const r = await fetch(`${requester.url}/delegate`, { method: "POST", headers: auth, body: JSON.stringify({ max_price: "0.05", wait: "settled", ...body }) });
    return [r.status, await r.json()];
  };
  const requesterLog = () => readFileSync(requester.log, "utf8");

  const context = await browser();
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = watchProblems(page);

    // Open the page before any job exists: it must pick them up by polling. The token
    // goes in once; the daemon answers with its cookie and sends the page to /.
    await page.goto(`${requester.url}/?token=${API_TOKEN}`);
    assert.equal(page.url(), `${requester.url}/`);
    const cookies = await context.cookies(requester.url);
    const cookie = cookies.find((c) => c.name === "edgent_token");
    assert.ok(cookie && cookie.httpOnly && cookie.sameSite === "Strict", JSON.stringify(cookies));
    await page.locator("#me", { hasText: REQUESTER_ENS }).waitFor({ timeout: UI_TIMEOUT_MS });
    assert.match(await page.locator("#conn").textContent(), /live/);
    await page.locator("#jobs", { hasText: "no jobs yet" }).waitFor({ timeout: UI_TIMEOUT_MS });

    // 1. A paid delegation: the flaky provider has the model loaded, so it is tried first;
    // its Ollama fails, it declines the stake (the decline refunds it), and the job fails
    // over, under a fresh job id and stake, to the other provider, which is paid.
    const [foStatus, failedOver] = await delegate({ model: DEMO_MODEL, prompt: "hello from the browser test" });
    assert.equal(foStatus, 200, `${JSON.stringify(failedOver)}\n${requesterLog()}`);
    assert.deepEqual(
      failedOver.attempts.map((a) => [a.provider, a.outcome, a.stake?.status]),
      [[FLAKY, "inference_failed", "refunded"], [HUB, "completed", undefined]],
    );
    const declined = failedOver.attempts[0];
    assert.match(declined.stake.tx_hash, /^0x[0-9a-f]{64}$/);
    assert.notEqual(declined.job_id, failedOver.job_id);
    assert.deepEqual([failedOver.payment.status, failedOver.payment.amount_units], ["released", PRICE_UNITS]);
    // 2. Through the front door, streamed: the local Ollama does not have the model, so it
    // goes to the mesh (the good provider now ranks first), paid too.
    const viaMesh = await fetch(`${requester.url}/api/generate`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ model: DEMO_MODEL, prompt: "stream it", stream: true }),
    });
    await viaMesh.text();
    assert.equal(viaMesh.headers.get("x-edgent-ran-on"), "mesh");
    const meshJob = viaMesh.headers.get("x-edgent-job");
    // 3. Twice through the front door to the local Ollama, streamed and whole: free.
    for (const stream of [true, false]) {
      const r = await fetch(`${requester.url}/api/generate`, {
        method: "POST",
        headers: auth,
        body: JSON.stringify({ model: LOCAL_MODEL, prompt: "stay here", stream }),
      });
      const text = await r.text();
      assert.equal(r.status, 200, text);
      assert.equal(r.headers.get("x-edgent-ran-on"), "local");
    }

    // 4. A paid delegation the flaky provider holds: its stake stays open, with its
    // deadline, until the test opens the gate.
    const gated = delegate({ model: GATED_MODEL, prompt: "wait for it" });
    await until(page, () => [...document.querySelectorAll("#stakes tr[data-job-id]")].some((tr) => tr.querySelector(".status")?.textContent === "staked"), null, "an open stake");
    const stakes = await rows(page, "stakes");
    assert.equal(stakes.length, 1, JSON.stringify(stakes));
    const openJob = stakes[0].jobId;
    const listed = await (await fetch(`${requester.url}/jobs?since=0&limit=200`, { headers: auth })).json();
    const openRec = listed.jobs.find((j) => j.job_id === openJob && j.side === "requester");
    assert.ok(openRec && openRec.model === GATED_MODEL && openRec.payment.stake_deadline > 0, JSON.stringify(openRec));
    const deadline = await page.$eval("#stakes tr[data-job-id] .deadline", (td) => [td.dataset.deadline, td.textContent]);
    assert.equal(deadline[0], String(openRec.payment.stake_deadline));
    assert.match(deadline[1], /^\d{2}:\d{2}:\d{2}( [AP]M)? \(in \d+ (min|s)\)$/);
    assert.deepEqual(stakes[0].cells.slice(1, 4), ["requester", "0.01 USDC", "staked"]);
    assert.equal(await page.locator("#locked .v").textContent(), "0.01 USDC");
    await shot(page, "money-open-stake.png", "#money-section");
    openGate();
    const [gatedStatus, gatedBody] = await gated;
    assert.equal(gatedStatus, 200, `${JSON.stringify(gatedBody)}\n${requesterLog()}`);
    assert.equal(gatedBody.job_id, openJob);
    assert.deepEqual([gatedBody.provider.node_id, gatedBody.payment.status], [FLAKY, "released"]);

    // Every request, in the list, each paid one released.
    const released = `released · 0.01 USDC`;
    await until(page, ([ids, want]) => document.querySelectorAll("#jobs tr[data-side=\"local\"]").length === 2
      && ids.every((id) => document.querySelector(`#jobs tr[data-job-id="${id}"][data-side="requester"] .pay`)?.textContent === want),
    [[failedOver.job_id, meshJob, openJob], released], "every paid request released");
    const list = await rows(page, "jobs");
    const local = list.filter((r) => r.side === "local");
    assert.equal(local.length, 2, JSON.stringify(list));
    for (const r of local) {
      const [, where, state, prov, model, attempts, , , pay] = r.cells;
      assert.deepEqual([where, state, prov, model, attempts, pay], ["local", "completed", "this node", LOCAL_MODEL, "—", "free (local)"]);
    }
    const fo = list.find((r) => r.jobId === failedOver.job_id);
    assert.ok(fo, JSON.stringify(list));
    assert.deepEqual(fo.cells.slice(1, 5), ["mesh", "completed", PROVIDER_SHOWN, DEMO_MODEL]);
    assert.equal(fo.cells[5], `2: 1. ${FLAKY_SHOWN} inference_failed (stake refunded) → 2. ${PROVIDER_SHOWN} completed`);
    assert.equal(fo.cells[6], failedOver.output.trim());
    assert.equal(fo.cells[8], released);
    const streamed = list.find((r) => r.jobId === meshJob);
    assert.ok(streamed, `no row for ${meshJob}: ${JSON.stringify(list)}`);
    assert.deepEqual(streamed.cells.slice(1, 6), ["mesh", "completed", PROVIDER_SHOWN, DEMO_MODEL, `1: 1. ${PROVIDER_SHOWN} completed`]);
    assert.match(streamed.cells[7], /^\d+(\.\d+)? m?s \/ \d+(\.\d+)? m?s$/);
    const held = list.find((r) => r.jobId === openJob);
    assert.deepEqual(held.cells.slice(1, 6), ["mesh", "completed", FLAKY_SHOWN, GATED_MODEL, `1: 1. ${FLAKY_SHOWN} completed`]);
    // The failed-over attempt keeps its own row: its own job id and stake, refunded.
    const gone = list.find((r) => r.jobId === declined.job_id);
    assert.ok(gone, JSON.stringify(list));
    assert.deepEqual(gone.cells.slice(1, 9), [
      "mesh", "failed", FLAKY_SHOWN, DEMO_MODEL, `1: 1. ${FLAKY_SHOWN} inference_failed (stake refunded)`,
      `inference_failed: the delegation moved to job ${failedOver.job_id} (another provider, its own stake)`,
      "— / —", "refunded · 0.01 USDC",
    ]);
    assert.equal(list.length, 6, JSON.stringify(list));

    // The mesh: this node, its two direct peers, the hub and the root behind the sub-hub,
    // who serves what (the flaky provider's models loaded, with its price), and the
    // failed-over path.
    await until(page, (n) => document.querySelectorAll("#mesh g.node").length === n, 5, "five nodes");
    const drawn = await page.$$eval("#mesh g.node", (gs) => gs.map((g) => ({
      id: g.dataset.nodeId, kind: g.dataset.kind, up: g.dataset.up,
      name: g.querySelector("text.name").textContent,
      offers: [...g.querySelectorAll("text.offer")].map((t) => [t.dataset.model, t.dataset.loaded, t.textContent]),
    })));
    const byId = new Map(drawn.map((n) => [n.id, n]));
    assert.equal(drawn.length, 5, JSON.stringify(drawn));
    const short = (id) => id.slice(0, 10) + "…";
    assert.deepEqual([byId.get(ME).kind, byId.get(ME).name, byId.get(ME).up], ["self", REQUESTER_ENS, "true"]);
    assert.deepEqual([byId.get(SUB).kind, byId.get(SUB).name, byId.get(SUB).up], ["peer", short(SUB), "true"]);
    assert.deepEqual([byId.get(PHONE).kind, byId.get(PHONE).name, byId.get(PHONE).up], ["peer", short(PHONE), "true"]);
    assert.deepEqual([byId.get(HUB).kind, byId.get(HUB).name], ["tree", PROVIDER_SHOWN]);
    // The flaky provider hangs off the root on another branch: AXL's tree (as mesh-sim models
    // it) lists only this node's own and its peers' paths to the root, so it is known from
    // its ad.
    assert.deepEqual([byId.get(FLAKY).kind, byId.get(FLAKY).name], ["known", FLAKY_SHOWN]);
    assert.deepEqual(byId.get(FLAKY).offers, [
      [DEMO_MODEL, "true", `◆ ${DEMO_MODEL} · 0.01 USDC`],
      [GATED_MODEL, "true", `◆ ${GATED_MODEL} · 0.01 USDC`],
    ]);
    assert.deepEqual(byId.get(HUB).offers.map((o) => o.slice(0, 2)), [[DEMO_MODEL, "false"]]);
    assert.deepEqual(byId.get(SUB).offers, []);
    const edges = await page.$$eval("#mesh line.edge", (ls) => ls.map((l) => [l.dataset.kind, l.dataset.from, l.dataset.to]).sort());
    assert.deepEqual(edges, [
      ["peer", ME, PHONE],
      ["peer", ME, SUB],
      ["route", ME, FLAKY],
      ["tree", HUB, SUB],
    ].sort());
    const path = await page.$$eval("#mesh path.attempt", (ps) => ps.map((p) => [p.dataset.step, p.dataset.to, p.dataset.outcome]));
    assert.deepEqual(path, [["1", FLAKY, "inference_failed"], ["2", HUB, "completed"]]);

    // Latency: two local points and three mesh points, each at its total and its first
    // token as the job records say.
    const records = (await (await fetch(`${requester.url}/jobs?since=0&limit=200`, { headers: auth })).json()).jobs;
    const made = records.filter((j) => (j.side === "local" || j.side === "requester") && !j.moved_to);
    assert.equal(made.length, 5, JSON.stringify(records));
    const points = await page.$$eval("#latency circle.point", (cs) => cs.map((c) => [c.dataset.jobId, c.dataset.kind, Number(c.dataset.ms)]));
    const firsts = await page.$$eval("#latency circle.ttft", (cs) => cs.map((c) => [c.dataset.jobId, Number(c.dataset.ms)]));
    assert.deepEqual(points.map((p) => p[0]).sort(), made.map((j) => j.job_id).sort());
    for (const j of made) {
      assert.deepEqual(points.find((p) => p[0] === j.job_id), [j.job_id, j.side === "local" ? "local" : "mesh", j.timings.total_ms]);
      assert.ok(Number.isInteger(j.timings.first_token_ms), JSON.stringify(j));
      assert.deepEqual(firsts.find((p) => p[0] === j.job_id), [j.job_id, j.timings.first_token_ms]);
    }
    assert.equal(points.filter((p) => p[1] === "local").length, 2, JSON.stringify(points));
    assert.equal(points.filter((p) => p[1] === "mesh").length, 3, JSON.stringify(points));
    // The phases of the newest paid job (the held one), in order.
    assert.equal(await page.locator("#phases").getAttribute("data-job-id"), openJob);
    const phases = await page.$$eval("#phases .phase", (ss) => ss.map((s) => s.dataset.phase));
    assert.deepEqual(phases, ["discover", "stake", "inference", "proof", "verify", "settle"]);

    // Trust: the good provider with its two deliveries first, the flaky one with its
    // failure and its one delivery.
    const trust = await rows(page, "trust");
    assert.deepEqual(trust.map((r) => r.nodeId), [HUB, FLAKY], "the better score first");
    const [good, bad] = trust;
    assert.deepEqual(good.cells.slice(0, 3), [PROVIDER_SHOWN, "1.00", "2 delivered · 0 failed · 0 disputed"]);
    assert.match(good.cells[3], /^average latency \d+(\.\d+)? m?s · no model loaded · price 0\.01 USDC · load \d+%$/);
    assert.deepEqual(bad.cells.slice(0, 3), [FLAKY_SHOWN, "0.67", "1 delivered · 1 failed · 0 disputed"]);
    assert.match(bad.cells[3], /^1 failure lower its success rate · average latency \d+(\.\d+)? m?s · edgent-demo, gated-demo loaded · price 0\.01 USDC · load \d+%$/);
    // No spot check here (VERIFY_FIRST=0, VERIFY_RATE=0): nobody caught, no check.
    assert.deepEqual((await rows(page, "caught")).map((r) => r.cells), [["no provider caught"]]);
    assert.deepEqual((await rows(page, "spotchecks")).map((r) => r.cells), [["no spot check yet (a job re-run by another provider of the model and compared)"]]);

    // Money: the wallet as people write it (100 USDC less three paid jobs; the refunded
    // stake came back), spent three times 0.01 USDC, earned nothing (a requester), nothing
    // staked now, and the refund of the failed-over attempt with its amount and its
    // transaction.
    await until(page, () => document.querySelector("#bal-usdc .v")?.textContent === "99.97 USDC", null, "the wallet's 99.97 USDC");
    assert.match(await page.locator("#bal-eth .v").textContent(), /^9,999\.\d{1,4} ETH$/);
    assert.equal(await page.locator("#spent .v").textContent(), "0.03 USDC");
    assert.equal(await page.locator("#earned .v").textContent(), "0 USDC");
    assert.equal(await page.locator("#locked .v").textContent(), "0 USDC");
    const dots = await page.$$eval("#money circle.dot.spent", (cs) => cs.map((c) => c.dataset.units));
    assert.deepEqual(dots, ["10000", "20000", "30000"]);
    assert.match(await page.locator("#stakes").textContent(), /no open stake/);
    const refunds = await rows(page, "refunds");
    assert.deepEqual(refunds.map((r) => [r.jobId, ...r.cells.slice(1)]), [
      [declined.job_id, `attempt at ${FLAKY_SHOWN}: refunded`, "0.01 USDC", short(declined.stake.tx_hash)],
    ]);
    assert.equal(await page.locator("#refunds a").getAttribute("href"), `${EXPLORER}/tx/${declined.stake.tx_hash}`);

    // Slow link: after the first poll the page asks only for what changed; with nothing
    // new, the answer carries no job.
    const quiet = await page.waitForResponse((r) => /\/jobs\?since=[1-9]\d*&/.test(r.url()), { timeout: UI_TIMEOUT_MS });
    const delta = await quiet.json();
    assert.deepEqual(delta.jobs, []);
    assert.ok(delta.cursor >= 5, JSON.stringify(delta));
    console.log(`screenshots: ${await shot(page, "dashboard-desktop.png")}`);
    await shot(page, "mesh.png", "#mesh-section");
    await shot(page, "latency.png", "#latency-section");
    await shot(page, "trust.png", "#trust-section");
    await shot(page, "money.png", "#money-section");

    // Live: the requester's spoke leaves (its link drawn down), and comes back.
    const sim = async (what) => {
      const r = await fetch(`${mesh[0].url}/sim/${what}/4`, { method: "POST" });
      assert.ok(r.ok, `sim ${what}: ${r.status} ${await r.text()}`);
    };
    const phoneUp = (up) => until(page, ([id, want]) => document.querySelector(`#mesh g.node[data-node-id="${id}"]`)?.dataset.up === want
      && document.querySelector(`#mesh line.edge[data-to="${id}"]`)?.getAttribute("stroke-dasharray") === (want === "true" ? null : "4 4"), [PHONE, up], `node 4 ${up === "true" ? "up" : "down"}`);
    await sim("kill");
    await phoneUp("false");
    await shot(page, "mesh-node-left.png", "#mesh-section");
    await sim("restart");
    await phoneUp("true");

    // A phone: one column, the tables as stacked cards, nothing wider than the screen.
    await page.setViewportSize({ width: 390, height: 844 });
    await until(page, () => document.getElementById("mesh").getAttribute("viewBox") === "0 0 360 560", null, "the mesh drawn for a phone");
    const narrow = await page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      // What sticks out: elements, and text overflowing its element.
      wide: (() => {
        const out = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 390)
          .map((e) => `${e.tagName}#${e.id}.${e.className?.baseVal ?? e.className} ${Math.round(e.getBoundingClientRect().right)}`);
        const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
        for (let t = walk.nextNode(); t; t = walk.nextNode()) {
          const r = document.createRange();
          r.selectNodeContents(t);
          const right = r.getBoundingClientRect().right;
          if (right > 390) out.push(`text "${t.textContent.slice(0, 40)}" in ${t.parentElement.tagName}.${t.parentElement.className} ${Math.round(right)}`);
        }
        return out.slice(0, 12);
      })(),
      mesh: document.getElementById("mesh").getBoundingClientRect().width,
      thead: getComputedStyle(document.querySelector("#jobs").parentElement.querySelector("thead")).display,
      cell: getComputedStyle(document.querySelector("#jobs tr td")).display,
    }));
    assert.ok(narrow.page <= 390, `the page is ${narrow.page} px wide on a 390 px screen: ${narrow.wide.join(", ")}`);
    assert.ok(narrow.mesh <= 390 && narrow.mesh > 300, `the mesh picture is ${narrow.mesh} px wide`);
    assert.equal(narrow.thead, "none");
    assert.equal(narrow.cell, "block");
    await page.locator("#mesh-section").scrollIntoViewIfNeeded();
    await shot(page, "dashboard-phone.png", null, false);
    await page.locator("#jobs").scrollIntoViewIfNeeded();
    await shot(page, "requests-phone.png", null, false);

    assert.match(await page.locator("#conn").textContent(), /live/);
    // The hostile name stayed text: no element came of it, nothing ran.
    assert.equal(await page.evaluate(() => document.querySelectorAll("img").length), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.deepEqual(problems, [], "the page logged errors or failed requests");
  } finally {
    await context.close();
  }
});

// User story: a provider cheats (it serves another model's answers under the name it
// advertises) and the requester's spot check catches it on its first job. The operator
// opens the trust picture and sees who was caught, when, on which job and on what
// evidence; the spot checks of the recent jobs with their verdicts and checkers; the check
// runs (each a paid job of its own) shown with their check, not among the agent's
// requests; and, on a phone, a cheater whose name is one long word of HTML staying inside
// the screen.
//
// Real parts: `edgent mesh-sim` (four nodes), `edgent local-chain` (anvil, MockUSDC, the
// escrow v4), four `edgent run` daemons, paid through the escrow: a requester that
// spot-checks each provider's first job (VERIFY_FIRST=1, rule in
// src/requester/spot_check.rs), two honest providers and a cheaper cheater, each on a small
// Ollama-API server of this file (the honest ones answer the same, the cheater otherwise:
// the substitution of tests/it/spot_checks.rs); the real prover; headless Chromium.
test("the trust picture shows the provider a spot check caught, each check's verdict, and its paid runs as checks, not requests", { timeout: 300_000 }, async () => {
  assert.ok(existsSync(EDGENT), `${EDGENT} is missing: build it first`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  const CHECKED_MODEL = "checked-demo";
  const HONEST = "Paris is the capital of France, and its largest city by far.";
  const answer = (text) => () => [
    { model: CHECKED_MODEL, response: text, done: false },
    { model: CHECKED_MODEL, response: "", done: true, eval_count: 12 },
  ];
  // One word of 150 characters, HTML at that: it must wrap, not widen the phone's page.
  const CHEAT_ENS = `<img/src=x/onerror=window.pwned=2>${"cheap".repeat(22)}.edgent.eth`;
  const CHEAT_SHOWN = `${CHEAT_ENS} (unverified)`;
  const [A_ENS, B_ENS] = ["honest-a.edgent.eth", "honest-b.edgent.eth"];
  const chain = await startChain([2]);
  const mesh = await startMesh(4);
  const [A, B, CHEAT] = mesh.map((n) => n.id);
  const honestA = await fakeOllama([CHECKED_MODEL], answer(HONEST));
  const honestB = await fakeOllama([CHECKED_MODEL], answer(HONEST));
  const cheap = await fakeOllama([CHECKED_MODEL], answer("Lyon is the capital of France."));
  const providerEnv = (i, ens, ollama, acct) => ({
    AXL_API_URL: mesh[i].url,
    EDGENT_ROLE: "provider",
    EDGENT_ENS_NAME: ens,
    INFERENCE_BACKEND: "ollama",
    OLLAMA_URL: ollama,
    ...paidEnv(chain, acct),
  });
  await startDaemon("honest-a", providerEnv(0, A_ENS, honestA, 3));
  await startDaemon("honest-b", providerEnv(1, B_ENS, honestB, 4));
  // Cheaper, so it is tried first (every provider is a newcomer here).
  await startDaemon("cheater", { ...providerEnv(2, CHEAT_ENS, cheap, 5), PRICE_USDC: "0.005" });
  const requester = await startDaemon("requester", {
    AXL_API_URL: mesh[3].url,
    EDGENT_ROLE: "requester",
    EDGENT_ENS_NAME: REQUESTER_ENS,
    EDGENT_API_TOKEN: API_TOKEN,
    // Each provider's first job here is re-run by another provider of the model.
    VERIFY_FIRST: "1",
    VERIFY_RATE: "0",
    ...paidEnv(chain, 2),
  });
  const auth = { authorization: `Bearer ${API_TOKEN}`, "content-type": "application/json" };
  // Wait for the three ads, so the check has its checkers.
  for (let t = Date.now(); ; ) {
    const s = await (await fetch(`${requester.url}/status`, { headers: auth })).json();
    if ((s.mesh_providers || []).filter((a) => (a.models || []).some((m) => m.name === CHECKED_MODEL)).length === 3) break;
    assert.ok(Date.now() - t < 60_000, `three providers of ${CHECKED_MODEL} never advertised: ${JSON.stringify(s.mesh_providers)}`);
    await new Promise((r) => setTimeout(r, 200));
  }

  // One paid delegation with fixed sampling (so the check re-runs it as it was): the cheater
  // answers first, two other providers re-run it, agree with each other and not with it:
  // caught, its result refused (its stake disputed), and the delegation moves to an honest
  // provider, whose first job here is checked by the other honest one: passed.
  const r = await fetch(`${requester.url}/delegate`, {
    method: "POST",
    headers: auth,
    body: JSON.stringify({ model: CHECKED_MODEL, prompt: "What is the capital of France?", options: { temperature: 0 }, max_price: "0.05", wait: "settled" }),
  });
  const body = await r.json();
  assert.equal(r.status, 200, `${JSON.stringify(body)}\n${readFileSync(requester.log, "utf8")}`);
  assert.equal(body.output, HONEST);
  assert.deepEqual(body.attempts.map((a) => [a.provider, a.outcome]).slice(0, 1), [[CHEAT, "caught"]]);
  assert.equal(body.attempts.length, 2, JSON.stringify(body.attempts));
  const served = body.attempts[1].provider;
  assert.ok([A, B].includes(served), JSON.stringify(body.attempts));
  const other = served === A ? B : A;
  const cheatJob = body.attempts[0].job_id;
  assert.notEqual(cheatJob, body.job_id);

  // The records, as the daemon keeps them: the cheater's attempt with its check (caught,
  // checked by both honest providers, two paid runs), the answer's record with its check
  // (passed, checked by the other honest provider, one paid run), and the three runs, each
  // marked as a check of its job.
  const records = (await (await fetch(`${requester.url}/jobs?since=0&limit=200`, { headers: auth })).json()).jobs;
  const rec = (id) => records.find((j) => j.job_id === id && j.side === "requester");
  const [caughtCheck] = rec(cheatJob).spot_checks;
  assert.deepEqual([caughtCheck.provider, caughtCheck.verdict, caughtCheck.mode, [...caughtCheck.checkers].sort()], [CHEAT, "caught", "rerun", [A, B].sort()]);
  assert.equal(caughtCheck.check_jobs.length, 2);
  const [passedCheck] = rec(body.job_id).spot_checks;
  assert.deepEqual([passedCheck.provider, passedCheck.verdict, passedCheck.checkers], [served, "passed", [other]]);
  assert.equal(passedCheck.check_jobs.length, 1);
  const runs = [...caughtCheck.check_jobs.map((id) => [id, cheatJob]), [passedCheck.check_jobs[0], body.job_id]];
  assert.deepEqual(records.filter((j) => j.check_of).map((j) => [j.job_id, j.check_of]).sort(), runs.sort());
  assert.equal(records.length, 5, JSON.stringify(records.map((j) => [j.job_id, j.side, j.check_of])));

  const context = await browser();
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = watchProblems(page);
    await page.goto(`${requester.url}/?token=${API_TOKEN}`);
    await page.locator("#me", { hasText: REQUESTER_ENS }).waitFor({ timeout: UI_TIMEOUT_MS });
    const released = "released · 0.01 USDC";
    // Every check run released (its provider paid once its proof checked) and the
    // cheater's stake disputed.
    await until(page, (want) => [...document.querySelectorAll("#spotchecks td.runs")]
      .reduce((n, td) => n + td.textContent.split(want).length - 1, 0) === 3
      && document.querySelector("#caught tr[data-job-id]")?.textContent.endsWith("its stake disputed"),
    "released 0.01 USDC", "the three check runs paid and the cheater's stake disputed");

    // Caught: the cheater, with the job it was caught on and the evidence.
    const caught = await rows(page, "caught");
    assert.deepEqual(caught.map((x) => [x.nodeId, x.jobId]), [[CHEAT, cheatJob]]);
    const [who, at, job, evidence] = caught[0].cells;
    assert.equal(who, CHEAT_SHOWN);
    assert.equal(at, await page.evaluate((t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" }), caughtCheck.at_ms));
    assert.ok(caughtCheck.at_ms >= rec(cheatJob).created_ms && caughtCheck.at_ms <= rec(body.job_id).updated_ms, JSON.stringify(caughtCheck));
    assert.equal(job, `0x…${cheatJob.slice(-8)}`);
    const h = (x) => x.slice(0, 8) + "…";
    assert.equal(evidence, `its output (${h(caughtCheck.output_hashes[0])}) differs from 2 checkers' that agree (${h(caughtCheck.output_hashes[1])}), re-running the job; 3 signed receipts kept · its stake ${rec(cheatJob).payment.status}`);
    assert.equal(rec(cheatJob).payment.status, "disputed");
    assert.notEqual(caughtCheck.output_hashes[0], caughtCheck.output_hashes[1]);
    assert.equal(caughtCheck.output_hashes[1], caughtCheck.output_hashes[2]);

    // The spot checks, newest first: the honest answer's (passed), then the cheater's
    // (failed), each with its checkers and its paid runs.
    const names = new Map([[A, `${A_ENS} (unverified)`], [B, `${B_ENS} (unverified)`]]);
    const checks = await rows(page, "spotchecks");
    assert.deepEqual(checks.map((x) => [x.jobId, x.nodeId]), [[body.job_id, served], [cheatJob, CHEAT]]);
    const verdicts = await page.$$eval("#spotchecks .verdict", (ss) => ss.map((x) => x.textContent));
    assert.deepEqual(verdicts, ["passed", "failed"]);
    const [pass, fail] = checks;
    assert.deepEqual(pass.cells.slice(0, 4), [`0x…${body.job_id.slice(-8)}`, names.get(served), "passed the checker agreed", names.get(other)]);
    assert.deepEqual(fail.cells.slice(0, 3), [`0x…${cheatJob.slice(-8)}`, CHEAT_SHOWN, "failed caught, two other providers agree and it does not"]);
    assert.equal(fail.cells[3], caughtCheck.checkers.map((k) => names.get(k)).join(", "));
    const run = (id) => `0x…${id.slice(-8)} at ${names.get(rec(id).peer)}, released 0.01 USDC`;
    assert.match(pass.cells[4], new RegExp(`^rerun · 1 run · 0\\.01 USDC · \\d+(\\.\\d+)? m?s: ${run(passedCheck.check_jobs[0]).replace(/[.()]/g, "\\$&")}$`));
    assert.match(fail.cells[4], new RegExp(`^rerun · 2 runs · 0\\.02 USDC · \\d+(\\.\\d+)? m?s: ${caughtCheck.check_jobs.map(run).join("; ").replace(/[.()]/g, "\\$&")}$`));

    // The trust rows: the honest providers first, the caught one last with its dispute.
    const trust = await rows(page, "trust");
    assert.equal(trust.length, 3, JSON.stringify(trust));
    assert.equal(trust[2].nodeId, CHEAT);
    // Its history counts the catch twice: the attempt's outcome and the exclusion.
    assert.deepEqual(trust[2].cells.slice(0, 3), [CHEAT_SHOWN, "excluded", "0 delivered · 0 failed · 1 disputed"]);
    assert.match(trust[2].cells[3], /^caught by a spot check here: given no more jobs, ranked last · /);

    // Requests: the agent's one delegation, two rows (the caught attempt, the answer); the
    // three check runs are not among them, nor on the latency picture.
    const list = await rows(page, "jobs");
    assert.deepEqual(list.map((x) => x.jobId).sort(), [cheatJob, body.job_id].sort());
    const answered = list.find((x) => x.jobId === body.job_id);
    assert.deepEqual(answered.cells.slice(1, 6), ["mesh", "completed", names.get(served), CHECKED_MODEL, `2: 1. ${CHEAT_SHOWN} caught (stake disputed) → 2. ${names.get(served)} completed`]);
    assert.equal(answered.cells[8], released);
    const points = await page.$$eval("#latency circle.point", (cs) => cs.map((c) => c.dataset.jobId));
    assert.deepEqual(points, [body.job_id]);
    assert.equal(await page.locator("#phases").getAttribute("data-job-id"), body.job_id);
    // Money: what was really paid, check runs included: the answer and three runs at
    // 0.01 USDC; the cheater's 0.005 USDC stake disputed, still in the escrow.
    await until(page, () => document.querySelector("#bal-usdc .v")?.textContent === "99.955 USDC", null, "the wallet's 99.955 USDC");
    assert.equal(await page.locator("#spent .v").textContent(), "0.04 USDC");
    assert.equal(await page.locator("#locked .v").textContent(), "0.005 USDC");
    const refunds = await rows(page, "refunds");
    assert.deepEqual(refunds.map((x) => [x.jobId, x.cells[1], x.cells[2]]), [[cheatJob, `attempt at ${CHEAT_SHOWN}: disputed`, "0.005 USDC"]]);
    await shot(page, "trust-caught.png", "#trust-section");

    // A phone 375 px wide: the cheater's one-word name wraps inside the screen.
    await page.setViewportSize({ width: 375, height: 812 });
    await until(page, () => document.getElementById("mesh").getAttribute("viewBox") === "0 0 360 560", null, "the page laid out for a phone");
    const wide = await page.evaluate(() => {
      const out = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > 375)
        .map((e) => `${e.tagName}#${e.id}.${e.className?.baseVal ?? e.className} ${Math.round(e.getBoundingClientRect().right)}`);
      const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let t = walk.nextNode(); t; t = walk.nextNode()) {
        const range = document.createRange();
        range.selectNodeContents(t);
        if (range.getBoundingClientRect().right > 375) out.push(`text "${t.textContent.slice(0, 40)}" in ${t.parentElement.tagName}`);
      }
      return { page: document.documentElement.scrollWidth, out: out.slice(0, 12) };
    });
    assert.ok(wide.page <= 375, `the page is ${wide.page} px wide on a 375 px screen: ${wide.out.join(", ")}`);
    assert.deepEqual(wide.out, []);
    await page.locator("#caught").scrollIntoViewIfNeeded();
    await shot(page, "trust-caught-phone.png", "#trust-section");

    assert.equal(await page.evaluate(() => document.querySelectorAll("img").length), 0);
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.deepEqual(problems, [], "the page logged errors or failed requests");
  } finally {
    await context.close();
  }
});

// User story: an operator runs `edgent demo` (the paid flow on a local anvil chain) and opens
// the dashboard it serves: the paid job's row shows the release with the amount, linking to
// the release transaction the demo printed; the money picture shows the wallet's balances
// as people write them, what was spent, and no open stake; the phase bar shows the six
// phases of the paid job.
test("the paid demo's dashboard links the job to its release and draws the money and the phases", async () => {
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

  const context = await browser();
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = watchProblems(page);
    await page.goto(`${url}/`);
    const link = page.locator(`#jobs tr[data-job-id="${jobId}"] a.pay`);
    await link.waitFor({ timeout: UI_TIMEOUT_MS });
    assert.equal((await link.textContent()).trim(), "released · 0.01 USDC");
    assert.ok((await link.getAttribute("href")).endsWith(tx), await link.getAttribute("href"));
    assert.match(await link.getAttribute("title"), /proof verified/);

    // Money: the wallet's balances as people write them (the demo funds 100 USDC; of anvil's
    // 10,000 ETH the requester spent the gas of its own release, escrow v4), the 0.01 USDC
    // spent, one step on the spent line.
    await until(page, () => /USDC$/.test(document.querySelector("#bal-usdc .v")?.textContent || ""), null, "the wallet's USDC");
    const usdcText = await page.locator("#bal-usdc .v").textContent();
    const ethText = await page.locator("#bal-eth .v").textContent();
    assert.equal(usdcText, "99.99 USDC");
    assert.match(ethText, /^9,999\.\d{1,4} ETH$/);
    assert.equal(await page.locator("#spent .v").textContent(), "0.01 USDC");
    assert.equal(await page.locator("#locked .v").textContent(), "0 USDC");
    const dots = await page.$$eval("#money circle.dot.spent", (cs) => cs.map((c) => c.dataset.units));
    assert.deepEqual(dots, ["10000"]);
    assert.match(await page.locator("#stakes").textContent(), /no open stake/);
    assert.match(await page.locator("#refunds").textContent(), /no refund or dispute/);

    // The phases of the paid job, in order, each with its time.
    assert.equal(await page.locator("#phases").getAttribute("data-job-id"), jobId);
    const phases = await page.$$eval("#phases .phase", (ss) => ss.map((s) => [s.dataset.phase, Number(s.dataset.ms)]));
    assert.deepEqual(phases.map((p) => p[0]), ["discover", "stake", "inference", "proof", "verify", "settle"]);
    assert.ok(phases.every((p) => Number.isInteger(p[1]) && p[1] >= 0), JSON.stringify(phases));
    // One mesh point on the latency picture, with its first token.
    const points = await page.$$eval("#latency circle.point", (cs) => cs.map((c) => [c.dataset.jobId, c.dataset.kind]));
    assert.deepEqual(points, [[jobId, "mesh"]]);

    await shot(page, "paid-money-phases.png", "#charts");
    await shot(page, "paid-requests.png", "#requests-section");
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
