// nbcanvas's MCP endpoint and OpenAPI document tried with clients written
// elsewhere, on the real engine: the official MCP TypeScript SDK (its
// Streamable HTTP client: initialize, tools, progress, cancel), the MCP
// Inspector's command line, and Redocly's OpenAPI linter.
//   NBCANVAS_BIN=build/nbcanvas node --test tests/mcp/mcp.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFile } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { LATEST_PROTOCOL_VERSION } from "@modelcontextprotocol/sdk/types.js";

const run = promisify(execFile);
const here = path.dirname(new URL(import.meta.url).pathname);
const bin = process.env.NBCANVAS_BIN || "build/nbcanvas";
const KEY = "mcp-test-key-" + process.pid;
const OTHER = "mcp-other-key-" + process.pid;
let server, base, dir, client;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sha = (s) => createHash("sha256").update(s).digest("hex");
const auth = (key) => ({ Authorization: `Bearer ${key}` });

async function connect(key = KEY) {
  const c = new Client({ name: "nbcanvas-test", version: "1.0.0" });
  await c.connect(new StreamableHTTPClientTransport(new URL(base + "/mcp"),
    { requestInit: { headers: auth(key) } }));
  return c;
}

async function metric(name) {
  const text = await (await fetch(base + "/metrics", { headers: auth(KEY) })).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ")[1]) : NaN;
}

async function until(what, pred, seconds = 60) {
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    if (await pred()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error("not within " + seconds + " s: " + what);
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "nbcanvas-mcp-"));
  const keys = path.join(dir, "keys.json");
  fs.writeFileSync(keys, JSON.stringify([
    { tenant: "agent", key_sha256: sha(KEY), metrics: true },
    { tenant: "other", key_sha256: sha(OTHER) },
  ]));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const config = path.join(dir, "config.json");
  fs.writeFileSync(config, JSON.stringify({
    listen: `127.0.0.1:${port}`, api_keys_file: keys, pool_size: 1,
    max_jobs: 2, max_sessions: 4, allowed_origins: ["https://agent.example"],
  }));
  server = spawn(bin, ["serve", "--config", config], { stdio: "inherit" });
  await until("nbcanvas ready", async () => {
    try { return (await fetch(base + "/readyz")).ok; } catch { return false; }
  });
  client = await connect();
});

after(async () => {
  if (client) await client.close();
  if (server) {
    const done = new Promise((r) => server.on("exit", r));
    server.kill("SIGTERM");
    assert.equal(await done, 0, "nbcanvas exits 0 on SIGTERM");
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("initialize settles on the SDK's newest protocol version", () => {
  assert.equal(client.getServerVersion().name, "nbcanvas");
  assert.equal(client.transport.protocolVersion, LATEST_PROTOCOL_VERSION);
  assert.ok(client.transport.sessionId, "an Mcp-Session-Id was handed out");
  assert.ok(client.getServerCapabilities().tools);
});

test("the tools are listed with input and output schemas", async () => {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(),
    ["create_session", "end_session", "execute", "get_notebook",
     "list_datasources", "list_languages", "render_notebook", "run_code"]);
  for (const t of tools) {
    assert.equal(t.inputSchema.type, "object", t.name);
    assert.equal(t.outputSchema.type, "object", t.name);
    assert.ok(t.description.length > 20, t.name);
    assert.ok(!JSON.stringify(t).includes("$ref"), t.name + " stands alone");
  }
});

test("render_notebook: text, a PNG figure, a link to the page, the json format", async () => {
  const r = await client.callTool({
    name: "render_notebook",
    arguments: {
      cells: ["print(6 * 7)",
              "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 1, 2])\nplt.xlabel('Time (s)')\nplt.show()"],
    },
  });
  assert.equal(r.isError, false);
  assert.ok(r.content.some((c) => c.type === "text" && c.text.includes("42")), r.content);
  const image = r.content.find((c) => c.type === "image");
  assert.equal(image.mimeType, "image/png");
  assert.deepEqual([...Buffer.from(image.data, "base64").subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const link = r.content.find((c) => c.type === "resource_link");
  assert.match(link.uri, /^http:\/\/127\.0\.0\.1:\d+\/v1\/results\/[0-9a-f-]{36}\?format=html$/);
  const page = await fetch(link.uri, { headers: auth(KEY) });
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  assert.match(await page.text(), /42/);
  // the SDK checked structuredContent against the tool's outputSchema
  assert.equal(r.structuredContent.status, "ok");
  assert.equal(r.structuredContent.cells.length, 2);
  const chart = r.structuredContent.cells[1].outputs
    .map((o) => o.data && o.data["application/vnd.nbcanvas.chart+json"]).find(Boolean);
  assert.ok(chart, "the figure's data is there for an agent to read");
});

test("a cell that raises is an error result with the traceback", async () => {
  const r = await client.callTool({ name: "render_notebook", arguments: { cells: ["1 / 0"] } });
  assert.equal(r.isError, true);
  const text = r.content.map((c) => c.text || "").join("\n");
  assert.match(text, /cell_error/);
  assert.match(text, /ZeroDivisionError/);
});

test("malformed arguments are JSON-RPC error -32602 naming the argument", async () => {
  await assert.rejects(
    client.callTool({ name: "render_notebook", arguments: { cells: ["1"], fromat: "html" } }),
    (e) => e.code === -32602 && /fromat/.test(e.message));
  await assert.rejects(
    client.callTool({ name: "render_notebook",
                      arguments: { cells: ["1"], files: [{ name: "../x", content_base64: "" }] } }),
    (e) => e.code === -32602 && /files\[0\]\.name/.test(e.message));
  await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }),
    (e) => e.code === -32602 && /no_such_tool/.test(e.message));
});

test("progress: one notification per cell, then the answer", async () => {
  const seen = [];
  const r = await client.callTool(
    { name: "render_notebook", arguments: { cells: ["a = 1", "b = 2", "print(a + b)"] } },
    undefined,
    { onprogress: (p) => seen.push(p) });
  assert.equal(r.isError, false);
  assert.deepEqual(seen.map((p) => p.progress), [1, 2, 3]);
  assert.ok(seen.every((p) => p.total === 3), seen);
});

test("notifications/cancelled stops the call's work", async () => {
  // The SDK keeps the HTTP request open and sends notifications/cancelled
  // on its own POST: only that message can stop the job.
  const abort = new AbortController();
  const call = client.callTool(
    { name: "render_notebook", arguments: { cells: ["import time\ntime.sleep(120)"] } },
    undefined, { signal: abort.signal, timeout: 200000 });
  await until("the job runs", async () => (await metric("nbcanvas_jobs_running")) === 1, 60);
  abort.abort("the user changed their mind");
  await assert.rejects(call);
  // long before the cell's two minutes
  await until("the job is stopped", async () => (await metric("nbcanvas_jobs_running")) === 0, 60);
});

test("a session keeps state between execute calls, and ends", async () => {
  const s = await client.callTool({ name: "create_session", arguments: {} });
  assert.equal(s.isError, false);
  const id = s.structuredContent.id;
  const x = await client.callTool({ name: "execute", arguments: { session_id: id, code: "x = 21" } });
  assert.equal(x.isError, false);
  const y = await client.callTool({ name: "execute", arguments: { session_id: id, code: "x * 2" } });
  assert.ok(y.content.some((c) => c.type === "text" && c.text === "42"), y.content);
  const z = await client.callTool({ name: "execute", arguments: { session_id: id, code: "raise ValueError('bad input')" } });
  assert.equal(z.isError, true);
  assert.match(z.content.map((c) => c.text || "").join("\n"), /ValueError: bad input/);
  const nb = await client.callTool({ name: "get_notebook", arguments: { session_id: id } });
  assert.equal(nb.structuredContent.format, "ipynb");
  assert.equal(nb.structuredContent.notebook.cells.length, 3);
  assert.equal(nb.content[0].type, "resource");
  const page = await client.callTool({ name: "get_notebook", arguments: { session_id: id, format: "html" } });
  assert.match(page.content[0].resource.text, /<html/i);
  // another tenant's agent cannot use it
  const other = await connect(OTHER);
  const stolen = await other.callTool({ name: "execute", arguments: { session_id: id, code: "x" } });
  assert.equal(stolen.isError, true);
  assert.match(stolen.content[0].text, /not_found/);
  await other.close();
  const end = await client.callTool({ name: "end_session", arguments: { session_id: id } });
  assert.deepEqual(end.structuredContent, { session_id: id, ended: true });
  const gone = await client.callTool({ name: "execute", arguments: { session_id: id, code: "1" } });
  assert.equal(gone.isError, true);
});

test("run_code: stdout and stderr apart, a compile error is an error result", async () => {
  const ok = await client.callTool({ name: "run_code",
    arguments: { language: "python3", code: "import sys\nprint('out')\nprint('err', file=sys.stderr)" } });
  assert.equal(ok.isError, false);
  assert.equal(ok.structuredContent.stdout, "out\n");
  assert.equal(ok.structuredContent.stderr, "err\n");
  const bad = await client.callTool({ name: "run_code", arguments: { language: "c", code: "int main( {" } });
  assert.equal(bad.isError, true);
  assert.equal(bad.structuredContent.status, "compile_error");
  await assert.rejects(client.callTool({ name: "run_code", arguments: { language: "cobol", code: "" } }),
    (e) => e.code === -32602);
});

test("list_languages and list_datasources", async () => {
  const r = await client.callTool({ name: "list_languages", arguments: {} });
  assert.ok(r.structuredContent.languages.some((l) => l.name === "python3"));
  assert.ok(r.structuredContent.kernels.some((k) => k.name === "python3"));
  // this service has none: the key's entry lists none (test_sql.py has some)
  const d = await client.callTool({ name: "list_datasources", arguments: {} });
  assert.deepEqual(d.structuredContent, { datasources: [] });
});

test("the MCP Inspector's command line lists the tools and calls one", async () => {
  const inspector = path.join(here, "node_modules", ".bin", "mcp-inspector");
  const args = ["--cli", base + "/mcp", "--transport", "http", "--header", `Authorization: Bearer ${KEY}`];
  const list = await run(inspector, [...args, "--method", "tools/list"], { timeout: 120000 });
  assert.ok(JSON.parse(list.stdout).tools.some((t) => t.name === "render_notebook"));
  const call = await run(inspector, [...args, "--method", "tools/call", "--tool-name", "run_code",
    "--tool-arg", "language=bash", "--tool-arg", "code=echo inspected"], { timeout: 120000 });
  assert.equal(JSON.parse(call.stdout).structuredContent.stdout, "inspected\n");
});

test("/openapi.json lints clean with Redocly", async () => {
  const doc = await (await fetch(base + "/openapi.json")).text();
  const file = path.join(dir, "openapi.json");
  fs.writeFileSync(file, doc);
  const redocly = path.join(here, "node_modules", ".bin", "redocly");
  // the recommended rules; no warning either
  const { stdout } = await run(redocly, ["lint", file, "--format", "json"], { timeout: 120000 });
  const report = JSON.parse(stdout);
  assert.deepEqual(report.totals, { errors: 0, warnings: 0, ignored: 0 }, JSON.stringify(report.problems));
});

test("examples/mcp_agent.mjs runs its loop to a chart", async () => {
  // run from here, where the SDK is installed: Node finds packages from
  // the script's folder
  const copy = path.join(here, "mcp_agent.example.mjs");
  fs.copyFileSync(path.join(here, "..", "..", "examples", "mcp_agent.mjs"), copy);
  const png = path.join(dir, "chart.png");
  try {
    const { stdout } = await run("node", [copy, png], {
      timeout: 180000, env: { ...process.env, NBCANVAS_URL: base, NBCANVAS_KEY: KEY },
    });
    assert.match(stdout, /render_notebook/);
    assert.match(stdout, /West\s+250/);
    assert.match(stdout, /chart: .*\(bar, 4 bars, y: Amount \(EUR\)\)/);
    assert.deepEqual([...fs.readFileSync(png).subarray(1, 4)], [0x50, 0x4e, 0x47]);
  } finally {
    fs.rmSync(copy, { force: true });
  }
});
