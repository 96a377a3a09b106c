// The canvas page in a real browser (Debian's Chromium, driven by
// playwright-core): it loads, each example from the menu renders its chart
// or table in the sandboxed iframe, an error shows its traceback and marks
// the cell, and the keyboard shortcut runs the cells.
//   NBCANVAS_BIN=build/nbcanvas node --test tests/browser/canvas.test.mjs
// With NBCANVAS_SCREENSHOTS=dir it saves a screenshot per example there.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.NBCANVAS_BIN || "build/nbcanvas";
const shots = process.env.NBCANVAS_SCREENSHOTS || "";
let server, browser, page, base;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitHealthy(url) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(url + "/healthz")).ok) return;
    } catch (e) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("nbcanvas did not start");
}

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  server = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`], { stdio: "inherit" });
  await waitHealthy(base);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.goto(base + "/");
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    const done = new Promise((r) => server.on("exit", r));
    server.kill("SIGTERM");
    assert.equal(await done, 0, "nbcanvas exits 0 on SIGTERM");
  }
});

async function waitRendered() {
  await page.waitForFunction(() => /Rendered|Failed/.test(document.querySelector("#status").textContent),
                             null, { timeout: 120000 });
}

async function pick(name) {
  await page.selectOption("#examples", name);
  await page.waitForFunction(() => /Running/.test(document.querySelector("#status").textContent) ||
                             /Rendered|Failed/.test(document.querySelector("#status").textContent));
  await waitRendered();
}

const frame = () => page.frameLocator("#frame");

test("the page loads with its editor and examples", async () => {
  assert.equal(await page.title(), "nbcanvas");
  assert.ok(await page.locator("#cells textarea").count() >= 1);
  const options = await page.locator("#examples option").allTextContents();
  assert.ok(options.length >= 5, options.join(","));
});

for (const [name, check] of [
  ["chart", async () => assert.ok(await frame().locator("img[src^='data:image/png']").count() >= 1)],
  ["seaborn", async () => assert.ok(await frame().locator("img[src^='data:image/png']").count() >= 1)],
  ["plotly", async () => {
    // plotly.js runs inside the sandboxed iframe under the page's CSP and
    // draws its SVG: the inlined require.js and library both loaded
    await frame().locator(".plotly-graph-div svg.main-svg").first().waitFor({ timeout: 30000 });
    assert.ok(await frame().locator(".plotly-graph-div .scatterlayer .trace").count() >= 4);
  }],
  ["text2sql", async () => {
    assert.ok(await frame().locator("table").count() >= 1);
    assert.match(await frame().locator("table").first().textContent(), /Customer/);
  }],
  ["analysis", async () => {
    assert.ok(await frame().locator("table").count() >= 2);
    assert.ok(await frame().locator("img[src^='data:image/png']").count() >= 1);
  }],
  ["r-chart", async () => {
    // R from the menu: the kernel picker follows the example
    assert.equal(await page.locator("#kernel").inputValue(), "ir");
    assert.ok(await frame().locator("img[src^='data:image/png']").count() >= 1);
    assert.match(await frame().locator("table").first().textContent(), /North|South|East|West/);
  }],
]) {
  test(`example ${name} renders in the iframe`, async () => {
    await pick(name);
    assert.match(await page.locator("#status").textContent(), /Rendered/);
    await check();
    if (shots) {
      fs.mkdirSync(shots, { recursive: true });
      await page.screenshot({ path: path.join(shots, `canvas-${name}.png`) });
    }
  });
}

test("an error shows its traceback and marks the cell", async () => {
  await pick("error");
  assert.match(await page.locator("#status").textContent(), /Failed \(422 cell_error\)/);
  const err = await page.locator("#error").textContent();
  assert.match(err, /Cell 1 raised IndexError/);
  assert.match(err, /list index out of range/);
  // the outputs so far come with the error
  assert.match(await page.locator("#error .partial").textContent(), /before the error/);
  // and the previous example's page is gone from the iframe
  assert.equal(await frame().locator("table").count(), 0);
  assert.equal(await page.locator(".cell.failed").count(), 1);
  if (shots) await page.screenshot({ path: path.join(shots, "canvas-error.png") });
});

test("keyboard: add a cell, type, Ctrl+Enter runs", async () => {
  await page.click("#add-code");
  const last = page.locator("#cells textarea").last();
  await last.fill("print('typed ' + str(6 * 7))");
  await page.locator("#cells .cell.failed textarea").fill("values = [1, 2, 3]\nvalues[-1]");
  await last.focus();
  await page.keyboard.press("Control+Enter");
  await page.waitForFunction(() => /Running/.test(document.querySelector("#status").textContent));
  await waitRendered();
  assert.match(await page.locator("#status").textContent(), /Rendered/);
  assert.match(await frame().locator("body").textContent(), /typed 42/);
});

test("a datasource: picked, its tables shown, a live SQL example drawn", async () => {
  // A second service with the demo database as its datasource "demo".
  const { execFileSync } = await import("node:child_process");
  const os = await import("node:os");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbcanvas-sql-"));
  const db = path.join(dir, "chinook.db");
  const top = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "..");
  execFileSync("bash", [path.join(top, "scripts", "demo-db.sh"), db]);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({
    pool_size: 1, datasources: [{ name: "demo", kind: "sqlite", path: db }] }));
  const port = await freePort();
  const served = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--config", path.join(dir, "config.json")],
                       { stdio: "inherit" });
  const url = `http://127.0.0.1:${port}`;
  const tab = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  try {
    await waitHealthy(url);
    await tab.goto(url + "/");
    await tab.locator("#sql").waitFor({ state: "attached" });
    await tab.waitForFunction(() => !document.querySelector("#sql").hidden);
    await tab.click("#sql summary");
    assert.deepEqual(await tab.locator("#datasource option").allTextContents(), ["demo (sqlite)"]);
    await tab.locator("#schema .table-schema", { hasText: /^Track:/ }).waitFor();
    assert.match(await tab.locator("#schema").textContent(), /TrackId \(key\)/);
    await tab.click("#add-sql");
    assert.match(await tab.locator("#cells textarea").last().inputValue(), /^%%sql demo -> df\nSELECT /);
    await tab.selectOption("#examples", "sql-chart");
    await tab.waitForFunction(() => /Rendered|Failed/.test(document.querySelector("#status").textContent),
                              null, { timeout: 120000 });
    assert.match(await tab.locator("#status").textContent(), /Rendered/);
    const drawn = tab.frameLocator("#frame");
    assert.ok(await drawn.locator("img[src^='data:image/png']").count() >= 1);
    assert.match(await drawn.locator("table").first().textContent(), /Rock/);
    if (shots) await tab.screenshot({ path: path.join(shots, "canvas-sql.png") });
  } finally {
    await tab.close();
    const done = new Promise((r) => served.on("exit", r));
    served.kill("SIGTERM");
    assert.equal(await done, 0);
    fs.rmSync(dir, { recursive: true });
  }
});

test("with API keys, the page asks for a key once and keeps it for the tab", async () => {
  // A second service with a keys file; the key comes from the CLI.
  const { execFileSync } = await import("node:child_process");
  const os = await import("node:os");
  const out = execFileSync(bin, ["key", "new", "browser"], { encoding: "utf8" }).split("\n");
  const key = out[0].replace("key: ", "");
  const entry = JSON.parse(out[1].replace("entry: ", ""));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbcanvas-keys-"));
  fs.writeFileSync(path.join(dir, "keys.json"), JSON.stringify([entry]));
  fs.writeFileSync(path.join(dir, "config.json"),
                   JSON.stringify({ api_keys_file: path.join(dir, "keys.json"), pool_size: 0 }));
  const port = await freePort();
  const keyed = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`, "--config", path.join(dir, "config.json")],
                      { stdio: "inherit" });
  const url = `http://127.0.0.1:${port}`;
  const tab = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  let asked = 0;
  tab.on("dialog", async (d) => { asked++; await d.accept(key); });
  try {
    await waitHealthy(url);
    await tab.goto(url + "/");
    // the examples' list needs the key: asked for on load, then listed
    await tab.waitForFunction(() => document.querySelectorAll("#examples option").length > 1);
    assert.equal(asked, 1);
    await tab.click("#run");
    await tab.waitForFunction(() => /Rendered|Failed/.test(document.querySelector("#status").textContent),
                              null, { timeout: 120000 });
    assert.match(await tab.locator("#status").textContent(), /Rendered/);
    assert.equal(asked, 1, "asked once, then kept");
    assert.equal(await tab.evaluate(() => sessionStorage.getItem("nbcanvas-key")), key);
    assert.equal(await tab.evaluate(() => localStorage.length), 0, "never kept beyond the tab");
  } finally {
    await tab.close();
    const done = new Promise((r) => keyed.on("exit", r));
    keyed.kill("SIGTERM");
    assert.equal(await done, 0);
    fs.rmSync(dir, { recursive: true });
  }
});

test("the data view shows a chart's values and sorts a table", async () => {
  // replace the cells with a bar chart and a table
  while (await page.locator("#cells .cell").count() > 0) {
    await page.locator("#cells .cell").first().locator("button[title=Remove]").click();
  }
  await page.click("#add-code");
  await page.locator("#cells textarea").last().fill(
    "import matplotlib.pyplot as plt\nplt.bar(['East', 'West'], [33136, 20514])\nplt.show()");
  await page.click("#add-code");
  await page.locator("#cells textarea").last().fill(
    "import pandas as pd\npd.DataFrame({'city': ['Oslo', 'Bergen', 'Molde'], 'n': [3, 10, 2]})");
  await page.click("#run");
  await waitRendered();
  assert.match(await page.locator("#status").textContent(), /Rendered/);
  assert.equal(await page.locator("#data").isHidden(), false);
  await page.locator("#data summary").click();
  const tables = page.locator("#data table");
  assert.equal(await tables.count(), 2);
  const bars = await tables.nth(0).locator("td").allTextContents();
  assert.deepEqual(bars, ["East", "", "33136", "West", "", "20514"]);
  // sort the frame by n, descending on the second click
  const n = tables.nth(1).locator("th", { hasText: /^n$/ });
  await n.click();
  await n.click();
  const cities = await tables.nth(1).locator("tr td:nth-child(2)").allTextContents();
  assert.deepEqual(cities, ["Bergen", "Oslo", "Molde"]);
  assert.match(await frame().locator("body").innerHTML(), /<img/); // the chart itself
});

async function replaceCells(...sources) {
  while (await page.locator("#cells .cell").count() > 0) {
    await page.locator("#cells .cell").first().locator("button[title=Remove]").click();
  }
  for (const source of sources) {
    await page.click("#add-code");
    await page.locator("#cells textarea").last().fill(source);
  }
}

test("a render's outputs show live while it runs, then the finished page", async () => {
  await replaceCells(
    "from IPython.display import HTML\nHTML(\"<b id='injected'>not in the page's own DOM</b>\")",
    "import time\nprint('tick 0', flush=True)\ntime.sleep(3)\nprint('tick 1', flush=True)");
  await page.click("#run");
  // the first tick arrives while the cell still sleeps
  await page.waitForFunction(() => /tick 0/.test(document.querySelector("#live").textContent),
                             null, { timeout: 120000 });
  assert.equal(await page.locator("#live").isVisible(), true);
  const live = await page.locator("#live").textContent();
  assert.doesNotMatch(live, /tick 1/);
  assert.doesNotMatch(await page.locator("#status").textContent(), /Rendered|Failed/);
  // an HTML output shows as its text/plain, never as markup in the page
  assert.match(live, /IPython\.core\.display\.HTML object/);
  assert.equal(await page.locator("#injected").count(), 0);
  await waitRendered();
  assert.match(await page.locator("#status").textContent(), /Rendered/);
  assert.equal(await page.locator("#live").isHidden(), true);
  assert.match(await frame().locator("body").textContent(), /tick 0\s*tick 1/);
  assert.equal(await frame().locator("#injected").count(), 1, "the HTML is in the sandboxed frame");
});

test("session mode: a live kernel keeps variables between cells, exports, ends", async () => {
  await page.click("#mode-session");
  assert.equal(await page.locator("#cells").isHidden(), true);
  await page.click("#session-start");
  await page.waitForFunction(() => !document.querySelector("#session-run").disabled, null, { timeout: 60000 });
  const cells = page.locator("#transcript .cell");
  await page.fill("#session-code", "x = 21");
  await page.click("#session-run");
  await cells.nth(0).locator(".cell-bar", { hasText: "ok ·" }).waitFor({ timeout: 60000 });
  await page.fill("#session-code", "print('twice', x)\nx * 2");
  await page.click("#session-run");
  await cells.nth(1).locator(".cell-bar", { hasText: "ok ·" }).waitFor({ timeout: 60000 });
  assert.equal(await cells.nth(1).locator(".outputs pre").nth(0).textContent(), "twice 21\n");
  assert.equal(await cells.nth(1).locator(".outputs pre").nth(1).textContent(), "42");
  assert.match(await cells.nth(1).locator(".cell-bar").textContent(), /In \[2\]/);
  // the notebook so far is shown in the frame, and exports as HTML
  await frame().locator("body", { hasText: "42" }).waitFor({ timeout: 30000 });
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#session-export")]);
  assert.equal(download.suggestedFilename(), "session.html");
  assert.match(fs.readFileSync(await download.path(), "utf8"), /twice 21/);
  const id = await page.evaluate(() => session.id);
  await page.click("#session-end");
  await page.waitForFunction(() => /Session ended/.test(document.querySelector("#status").textContent));
  assert.equal((await fetch(`${base}/v1/sessions/${id}/notebook?format=json`)).status, 404);
  assert.equal(await page.locator("#session-start").isVisible(), true);
  assert.equal(await page.locator("#session-run").isDisabled(), true);
});

test("session mode: a session that ended elsewhere is said so, and a new one starts", async () => {
  await page.click("#session-start");
  await page.waitForFunction(() => !document.querySelector("#session-run").disabled, null, { timeout: 60000 });
  const id = await page.evaluate(() => session.id);
  assert.equal((await fetch(`${base}/v1/sessions/${id}`, { method: "DELETE" })).status, 204);
  await page.fill("#session-code", "1 + 1");
  await page.locator("#session-code").press("Control+Enter");
  await page.waitForFunction(() => /session has ended/.test(document.querySelector("#status").textContent));
  assert.match(await page.locator("#transcript .cell.failed .cell-bar").textContent(), /not_found/);
  assert.equal(await page.locator("#session-start").isVisible(), true);
  await page.click("#session-start");
  await page.waitForFunction(() => !document.querySelector("#session-run").disabled, null, { timeout: 60000 });
  await page.click("#session-run"); /* the code is still there */
  await page.locator("#transcript .cell .outputs", { hasText: /^2$/ }).waitFor({ timeout: 60000 });
  await page.click("#session-end");
  await page.waitForFunction(() => /Session ended/.test(document.querySelector("#status").textContent));
  await page.click("#mode-notebook");
  assert.equal(await page.locator("#session").isHidden(), true);
});
