// nbcanvas's kernel gateway driven by @jupyterlab/services, the library
// JupyterLab itself uses to talk to a Jupyter server, on the real engine:
// kernel specs, a kernel started, executed (stream, execute_result,
// display_data with a PNG), interrupted, restarted and shut down, and
// another tenant's key kept out of it.
//   NBCANVAS_BIN=build/nbcanvas node --test tests/jupyter/jupyterlab.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import WebSocket from "ws";
import {
  KernelManager, KernelSpecAPI, KernelAPI, ServerConnection,
} from "@jupyterlab/services";

const bin = process.env.NBCANVAS_BIN || "build/nbcanvas";
const KEY = "jlab-test-key-" + process.pid;
const OTHER = "jlab-other-key-" + process.pid;
let server, base, dir, manager, kernel;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sha = (s) => createHash("sha256").update(s).digest("hex");

function settings(token) {
  return ServerConnection.makeSettings({
    baseUrl: base + "/", wsUrl: base.replace("http", "ws") + "/", token,
    appendToken: true, WebSocket, fetch, Request, Headers,
  });
}

async function until(what, pred, seconds = 60) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("not within " + seconds + " s: " + what);
}

// Runs code; resolves with the reply's content and every IOPub message.
async function execute(code) {
  const iopub = [];
  const future = kernel.requestExecute({ code });
  future.onIOPub = (msg) => { iopub.push(msg); };
  const reply = await future.done;
  return { reply: reply.content, iopub };
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbcanvas-jlab-"));
  const keys = path.join(dir, "keys.json");
  fs.writeFileSync(keys, JSON.stringify([
    { tenant: "lab", key_sha256: sha(KEY) },
    { tenant: "other", key_sha256: sha(OTHER) },
  ]));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = path.join(dir, "config.json");
  fs.writeFileSync(config, JSON.stringify({
    listen: `127.0.0.1:${port}`, api_keys_file: keys, pool_size: 1,
    max_jobs: 2, max_sessions: 4,
  }));
  server = spawn(bin, ["serve", "--config", config], { stdio: "inherit" });
  await until("nbcanvas ready", async () => {
    try { return (await fetch(base + "/readyz")).ok; } catch { return false; }
  });
  manager = new KernelManager({ serverSettings: settings(KEY) });
  await manager.ready;
});

after(async () => {
  if (manager) manager.dispose();
  if (server) {
    const done = new Promise((r) => server.on("exit", r));
    server.kill("SIGTERM");
    assert.equal(await done, 0, "nbcanvas exits 0 on SIGTERM");
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("the kernel specs, as JupyterLab validates them", async () => {
  const specs = await KernelSpecAPI.getSpecs(settings(KEY));
  assert.equal(specs.default, "python3");
  assert.equal(specs.kernelspecs.python3.language, "python");
  assert.ok(Array.isArray(specs.kernelspecs.python3.argv));
});

test("a kernel starts, answers kernel_info and runs code", async () => {
  kernel = await manager.startNew({ name: "python3" });
  const info = await kernel.info;
  assert.equal(info.language_info.name, "python");
  const { reply, iopub } = await execute("print('hello from the sandbox')\n6 * 7");
  assert.equal(reply.status, "ok");
  const stream = iopub.find((m) => m.header.msg_type === "stream");
  assert.equal(stream.content.name, "stdout");
  assert.equal(stream.content.text, "hello from the sandbox\n");
  const result = iopub.find((m) => m.header.msg_type === "execute_result");
  assert.equal(result.content.data["text/plain"], "42");
  const states = iopub.filter((m) => m.header.msg_type === "status")
    .map((m) => m.content.execution_state);
  assert.deepEqual(states, ["busy", "idle"]);
});

test("a matplotlib figure arrives as display_data with a PNG", async () => {
  const { reply, iopub } = await execute(
    "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.show()");
  assert.equal(reply.status, "ok");
  const shown = iopub.find((m) => m.header.msg_type === "display_data");
  const png = Buffer.from(shown.content.data["image/png"], "base64");
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
});

test("the kernel is listed, busy while it runs, and in /v1/sessions", async () => {
  const running = await KernelAPI.listRunning(settings(KEY));
  const model = running.find((k) => k.id === kernel.id);
  assert.equal(model.name, "python3");
  assert.match(model.last_activity, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.ok(model.connections >= 1);
  const sessions = await (await fetch(base + "/v1/sessions",
    { headers: { Authorization: `Bearer ${KEY}` } })).json();
  assert.ok(sessions.some((s) => s.id === kernel.id));
});

test("an interrupt stops a sleeping cell with KeyboardInterrupt", async () => {
  const future = kernel.requestExecute({ code: "import time\ntime.sleep(600)" });
  const iopub = [];
  future.onIOPub = (msg) => { iopub.push(msg); };
  await until("the cell runs", () =>
    iopub.some((m) => m.header.msg_type === "execute_input"));
  await kernel.interrupt();
  const reply = await future.done.catch((e) => e);
  assert.equal(reply.content.status, "error");
  assert.equal(reply.content.ename, "KeyboardInterrupt");
});

test("input() is not offered: the code gets an error, not a hang", async () => {
  const { reply } = await execute("input('name? ')");
  assert.equal(reply.status, "error");
  assert.equal(reply.ename, "StdinNotImplementedError");
});

test("a restart keeps the id and forgets the state", async () => {
  await execute("remembered = 1");
  const id = kernel.id;
  await kernel.restart();
  assert.equal(kernel.id, id);
  const { reply } = await execute("remembered");
  assert.equal(reply.status, "error");
  assert.equal(reply.ename, "NameError");
  const { reply: again } = await execute("1 + 1");
  assert.equal(again.status, "ok");
});

test("another tenant's key finds no such kernel, REST and WebSocket", async () => {
  const other = await fetch(`${base}/api/kernels/${kernel.id}`,
    { headers: { Authorization: `token ${OTHER}` } });
  assert.equal(other.status, 404);
  const body = await other.json();
  assert.equal(body.reason, "not_found");
  assert.ok(body.message);
  const list = await KernelAPI.listRunning(settings(OTHER));
  assert.equal(list.length, 0);
  const refused = await new Promise((resolve) => {
    const ws = new WebSocket(
      `${base.replace("http", "ws")}/api/kernels/${kernel.id}/channels?token=${OTHER}`);
    ws.on("unexpected-response", (req, res) => resolve(res.statusCode));
    ws.on("open", () => { ws.close(); resolve("opened"); });
    ws.on("error", () => {});
  });
  assert.equal(refused, 404);
  const nokey = await fetch(`${base}/api/kernels`);
  assert.equal(nokey.status, 401);
});

test("a cross-site WebSocket upgrade is refused", async () => {
  const status = await new Promise((resolve) => {
    const ws = new WebSocket(
      `${base.replace("http", "ws")}/api/kernels/${kernel.id}/channels?token=${KEY}`,
      { origin: "https://evil.example" });
    ws.on("unexpected-response", (req, res) => resolve(res.statusCode));
    ws.on("open", () => { ws.close(); resolve("opened"); });
    ws.on("error", () => {});
  });
  assert.equal(status, 403);
});

test("shutdown ends the kernel: 404 afterwards, its sandbox gone", async () => {
  const id = kernel.id;
  await kernel.shutdown();
  const gone = await fetch(`${base}/api/kernels/${id}`,
    { headers: { Authorization: `token ${KEY}` } });
  assert.equal(gone.status, 404);
  const sessions = await (await fetch(base + "/v1/sessions",
    { headers: { Authorization: `Bearer ${KEY}` } })).json();
  assert.ok(!sessions.some((s) => s.id === id));
});
