// Drive an MCP server over streamable HTTP with the official TypeScript SDK client,
// sending the access token as a bearer header (requestInit), as a Node MCP host would.
//
// Usage: MCP_BEARER_TOKEN=TOKEN node mcp_client.mjs URL < plan.json
//   plan.json: {"calls": [{"name": "web_search", "arguments": {"query": "..."}}, ...]}
// Prints one JSON object and exits 0:
//   {"tools": [names], "calls": [{"name", "isError", "structured", "text"} or {"name", "error"}]}
//   or {"error": {"status", "message"}} when connecting fails (for example a 401).
// The token comes from the environment, never argv (where `ps` would show it).
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url] = process.argv.slice(2);
if (!url) {
  console.error("usage: MCP_BEARER_TOKEN=TOKEN node mcp_client.mjs URL < plan.json");
  process.exit(2);
}
const plan = JSON.parse(readFileSync(0, "utf8") || "{}");
const token = process.env.MCP_BEARER_TOKEN;
const headers = token ? { Authorization: `Bearer ${token}` } : {};

function describe(err) {
  // StreamableHTTPError carries the HTTP status as `code`; McpError the JSON-RPC code.
  return { code: err.code ?? null, message: String(err.message ?? err) };
}

const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "mcp-warden-node-check", version: "1.0.0" });
const out = {};
try {
  await client.connect(transport);
  out.tools = (await client.listTools()).tools.map((tool) => tool.name);
  out.calls = [];
  for (const call of plan.calls ?? []) {
    try {
      const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} });
      const text = (result.content ?? []).map((part) => part.text ?? "").join(" ");
      out.calls.push({ name: call.name, isError: Boolean(result.isError), structured: result.structuredContent ?? null, text });
    } catch (err) {
      out.calls.push({ name: call.name, error: describe(err) });
    }
  }
} catch (err) {
  out.error = describe(err);
} finally {
  await client.close().catch(() => {});
}
console.log(JSON.stringify(out));
