// How each official TypeScript SDK client line parses an authorization server's RFC 8414
// metadata: its own discovery function (discoverAuthorizationServerMetadata) is given a fetch
// that answers the well-known URL with each document, so nothing goes over the network.
//
// Usage: node as_metadata.mjs < {"issuer": URL, "documents": {"name": {...metadata}, ...}}
// Prints {"1": {"name": "accepted" | "<why it was rejected>"}, "2": {...}}:
//   1 = @modelcontextprotocol/sdk 1.x, 2 = @modelcontextprotocol/client 2.x.
import { readFileSync } from "node:fs";
import * as v1 from "@modelcontextprotocol/sdk/client/auth.js";
import * as v2 from "@modelcontextprotocol/client";

const { issuer, documents } = JSON.parse(readFileSync(0, "utf8"));
const out = {};
for (const [line, sdk] of [["1", v1], ["2", v2]]) {
  out[line] = {};
  for (const [name, doc] of Object.entries(documents)) {
    const fetchFn = async (url) =>
      new URL(url).pathname.startsWith("/.well-known/oauth-authorization-server")
        ? new Response(JSON.stringify(doc), { status: 200, headers: { "content-type": "application/json" } })
        : new Response("not found", { status: 404 });
    try {
      const metadata = await sdk.discoverAuthorizationServerMetadata(issuer, { fetchFn });
      out[line][name] = metadata ? "accepted" : "no metadata";
    } catch (err) {
      const issues = Array.isArray(err?.issues) ? err.issues.map((i) => i.path.join(".")).join(", ") : "";
      out[line][name] = `${err?.constructor?.name ?? "Error"}: ${issues || String(err?.message ?? err)}`;
    }
  }
}
console.log(JSON.stringify(out));
