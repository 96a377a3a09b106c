// Debian's classic Notebook (jupyter-notebook 6) started with
// --gateway-url pointing at nbcanvas, driven in Debian's Chromium
// (playwright-core) as a person would: open a notebook, type a cell that
// draws a matplotlib figure, run it and see the figure; restart the
// kernel from the menu and run a cell on the fresh kernel. Every kernel
// the page uses runs in an nbcanvas sandbox.
//   NBCANVAS_BIN=build/nbcanvas node --test tests/browser/notebook.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const bin = process.env.NBCANVAS_BIN || "build/nbcanvas";
let server, notebook, browser, page, base, dir, nbBase;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function until(what, pred, seconds = 60) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    try { if (await pred()) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("not within " + seconds + " s: " + what);
}

async function kernels() {
  return (await fetch(base + "/api/kernels")).json();
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbcanvas-notebook-"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = path.join(dir, "config.json");
  fs.writeFileSync(config, JSON.stringify({
    listen: `127.0.0.1:${port}`, pool_size: 1, max_sessions: 4,
  }));
  server = spawn(bin, ["serve", "--config", config], { stdio: "inherit" });
  await until("nbcanvas ready", async () => (await fetch(base + "/readyz")).ok);

  const work = path.join(dir, "work");
  fs.mkdirSync(work);
  fs.writeFileSync(path.join(work, "chart.ipynb"), JSON.stringify({
    cells: [{ cell_type: "code", source: "", metadata: {}, outputs: [],
              execution_count: null }],
    metadata: { kernelspec: { name: "python3", display_name: "Python 3",
                              language: "python" } },
    nbformat: 4, nbformat_minor: 5,
  }));
  const nbPort = await freePort();
  nbBase = `http://127.0.0.1:${nbPort}`;
  notebook = spawn("/usr/bin/jupyter-notebook", [
    "--no-browser", "--allow-root", "--ip=127.0.0.1", `--port=${nbPort}`,
    "--NotebookApp.token=", "--NotebookApp.password=",
    `--notebook-dir=${work}`, `--gateway-url=${base}`,
  ], { stdio: "inherit", env: { ...process.env, HOME: dir, JUPYTER_RUNTIME_DIR: dir } });
  await until("the Notebook server", async () => (await fetch(nbBase + "/api")).ok);

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
});

after(async () => {
  if (browser) await browser.close();
  if (notebook) {
    const done = new Promise((r) => notebook.on("exit", r));
    notebook.kill("SIGTERM");
    await done;
  }
  if (server) {
    const done = new Promise((r) => server.on("exit", r));
    server.kill("SIGTERM");
    assert.equal(await done, 0, "nbcanvas exits 0 on SIGTERM");
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

async function kernelIdle() {
  await page.waitForSelector("#kernel_indicator_icon.kernel_idle_icon",
                             { timeout: 120000 });
}

// Types code into the cell at index (clicking it, as a person would) and
// runs it with Shift+Enter.
async function typeAndRun(index, code) {
  const cell = page.locator(".cell").nth(index);
  await cell.locator(".CodeMirror").click();
  for (const [i, line] of code.split("\n").entries()) {
    if (i > 0) {
      await page.keyboard.press("Enter");
      await page.keyboard.press("Home"); // no auto-indent carried over
    }
    await page.keyboard.type(line);
  }
  await page.keyboard.press("Shift+Enter");
  return cell;
}

test("the page's kernel starts in an nbcanvas sandbox", async () => {
  await page.goto(nbBase + "/notebooks/chart.ipynb");
  await kernelIdle();
  const running = await kernels();
  assert.equal(running.length, 1, JSON.stringify(running));
  assert.equal(running[0].name, "python3");
});

test("a cell typed and run draws a matplotlib figure on the page", async () => {
  const cell = await typeAndRun(0,
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.title('from nbcanvas')\nplt.show()");
  const img = cell.locator(".output_area img");
  await img.waitFor({ timeout: 120000 });
  const { src, width } = await img.evaluate((el) => ({ src: el.src, width: el.naturalWidth }));
  assert.match(src, /^data:image\/png;base64,/);
  assert.ok(width > 100, "the figure has pixels: " + width);
  assert.match(await cell.locator(".input_prompt").textContent(), /\[1\]/);
});

test("after a restart from the Kernel menu, a cell runs on a fresh kernel", async () => {
  const [before] = await kernels();
  await page.click("#kernellink");
  await page.click("#restart_kernel > a");
  await page.click(".modal-footer button.btn-danger");
  await kernelIdle();
  const cell = await typeAndRun(1, "print(6 * 7, 'plt' in globals())");
  const out = cell.locator(".output_subarea.output_stream");
  await out.waitFor({ timeout: 120000 });
  assert.equal((await out.textContent()).trim(), "42 False");
  assert.match(await cell.locator(".input_prompt").textContent(), /\[1\]/);
  const [after] = await kernels();
  assert.equal(after.id, before.id, "the same kernel id, restarted");
});
