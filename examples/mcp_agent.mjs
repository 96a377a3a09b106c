// An agent's loop over nbcanvas's MCP endpoint with the official SDK
// (npm install @modelcontextprotocol/sdk): start a live kernel with a CSV,
// look at the data, draw a chart, read the figure back as an image, end
// the session. What a model would decide between the calls is written out
// here as fixed steps.
//   NBCANVAS_URL=http://127.0.0.1:8080 [NBCANVAS_KEY=...] node examples/mcp_agent.mjs [out.png]
import fs from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL("/mcp", process.env.NBCANVAS_URL || "http://127.0.0.1:8080");
const headers = process.env.NBCANVAS_KEY ? { Authorization: `Bearer ${process.env.NBCANVAS_KEY}` } : {};
const out = process.argv[2] || "chart.png";

const csv = "region,month,amount\nEast,Jan,120\nEast,Feb,135\nWest,Jan,90\nWest,Feb,160\n";
const client = new Client({ name: "nbcanvas-example-agent", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(url, { requestInit: { headers } }));

const { tools } = await client.listTools();
console.log("tools:", tools.map((t) => t.name).join(", "));

// Every text a tool answers, as a model would read it.
const said = (result) => result.content.filter((c) => c.type === "text").map((c) => c.text).join("\n");

const session = await client.callTool({
  name: "create_session",
  arguments: { files: [{ name: "sales.csv", content_base64: Buffer.from(csv).toString("base64") }] },
});
const id = session.structuredContent.id;
console.log("session:", id);
try {
  const look = await client.callTool({
    name: "execute",
    arguments: { session_id: id, code: "import pandas as pd\ndf = pd.read_csv('sales.csv')\nprint(df.groupby('region').amount.sum())" },
  });
  console.log(said(look));

  const chart = await client.callTool({
    name: "execute",
    arguments: {
      session_id: id,
      code: "import matplotlib.pyplot as plt\n" +
            "df.pivot(index='month', columns='region', values='amount').plot(kind='bar')\n" +
            "plt.ylabel('Amount (EUR)')\nplt.title('Sales by month')\nplt.show()",
    },
  });
  if (chart.isError) throw new Error(said(chart));
  const image = chart.content.find((c) => c.type === "image");
  fs.writeFileSync(out, Buffer.from(image.data, "base64"));
  const data = chart.structuredContent.outputs
    .map((o) => o.data && o.data["application/vnd.nbcanvas.chart+json"]).find(Boolean);
  console.log(`chart: ${out} (${data.type}, ${data.elements.length} bars, y: ${data.y_label})`);
} finally {
  await client.callTool({ name: "end_session", arguments: { session_id: id } });
  await client.close();
}
