// Drive an issuer-protected MCP server with the official TypeScript SDK's machine-to-machine
// OAuth clients, as a Node MCP host would: the client starts with no token, discovers the
// issuer from the server's 401 (RFC 9728 metadata, then RFC 8414), fetches its own token
// (client_credentials) and steps up when the server answers 403 insufficient_scope.
//
// Usage: MCP_CLIENT_SECRET=... | MCP_CLIENT_KEY=... node oauth_client.mjs URL < plan
//   The first line of stdin is the plan, one JSON object:
//     {"line": "1" | "2",                  @modelcontextprotocol/sdk 1.x, @modelcontextprotocol/client 2.x
//      "issuer": "https://...",            the issuer the client expects (expectedIssuer)
//      "clientId": "...",
//      "method": "client_secret_basic" | "private_key_jwt",
//      "alg": "ES256" | "EdDSA" | "RS256", private_key_jwt: MCP_CLIENT_KEY is a PKCS#8 PEM,
//                                          or a private JWK (JSON) for EdDSA
//      "onInsufficientScope": "throw",     2.x only, optional: raise InsufficientScopeError
//      "steps": [{"name": "web_search", "arguments": {...}}, {"pause": "label"}, ...]}
//   At a {"pause": label} step it prints {"paused": label} on a line of stdout and goes on
//   once a line arrives on stdin (the test changes something meanwhile).
// Prints one JSON object on the last line of stdout and exits 0:
//   {"calls": [{"name", "isError", "text"} or {"name", "error": {...}}], "tokenRequests": n}
//   or {"error": {...}} when connecting fails.
// Secrets come from the environment, never argv (where `ps` would show them).
import { createInterface } from "node:readline";

const [url] = process.argv.slice(2);
if (!url) {
  console.error("usage: MCP_CLIENT_SECRET=... node oauth_client.mjs URL < plan");
  process.exit(2);
}
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const nextLine = async () => {
  const { value, done } = await lines.next();
  if (done) throw new Error("stdin closed");
  return value;
};
const plan = JSON.parse(await nextLine());

const LINES = {
  1: {
    client: "@modelcontextprotocol/sdk/client/index.js",
    transport: "@modelcontextprotocol/sdk/client/streamableHttp.js",
    auth: "@modelcontextprotocol/sdk/client/auth-extensions.js",
  },
  2: {
    client: "@modelcontextprotocol/client",
    transport: "@modelcontextprotocol/client",
    auth: "@modelcontextprotocol/client",
  },
};
const modules = LINES[plan.line];
if (!modules) {
  console.error(`unknown SDK line ${plan.line}`);
  process.exit(2);
}
const { Client } = await import(modules.client);
const { StreamableHTTPClientTransport } = await import(modules.transport);
const { ClientCredentialsProvider, PrivateKeyJwtProvider } = await import(modules.auth);

function privateKey() {
  const key = process.env.MCP_CLIENT_KEY ?? "";
  return key.trimStart().startsWith("{") ? JSON.parse(key) : key;
}

// What the SDK is given: the client's id and secret or key, and the issuer it expects (so its
// credentials go to no other authorization server, whatever a server's metadata names).
const expected = { expectedIssuer: plan.issuer };
const provider =
  plan.method === "private_key_jwt"
    ? new PrivateKeyJwtProvider({ clientId: plan.clientId, privateKey: privateKey(), algorithm: plan.alg, ...expected })
    : new ClientCredentialsProvider({ clientId: plan.clientId, clientSecret: process.env.MCP_CLIENT_SECRET, ...expected });

// Count the token requests the SDK makes (the issuer's audit log says what it granted).
let tokenRequests = 0;
const tokenEndpoint = new URL("token", plan.issuer.endsWith("/") ? plan.issuer : `${plan.issuer}/`).href;
const counting = (input, init) => {
  if (String(input instanceof Request ? input.url : input) === tokenEndpoint) tokenRequests += 1;
  return fetch(input, init);
};

function describe(err) {
  // 1.x StreamableHTTPError: `code` is the HTTP status; 2.x SdkHttpError: `code` is a name and
  // `status`, `data.text` the response; InsufficientScopeError: `requiredScope`; McpError /
  // ProtocolError: the JSON-RPC `code`.
  return {
    type: err?.constructor?.name ?? typeof err,
    code: err?.code ?? null,
    status: err?.status ?? err?.data?.status ?? null,
    message: String(err?.message ?? err),
    text: typeof err?.data?.text === "string" ? err.data.text : null,
    requiredScope: err?.requiredScope ?? null,
  };
}

const options = { authProvider: provider, fetch: counting };
if (plan.onInsufficientScope) options.onInsufficientScope = plan.onInsufficientScope;
const transport = new StreamableHTTPClientTransport(new URL(url), options);
const client = new Client({ name: "mcp-warden-oauth-check", version: "1.0.0" });
const out = { calls: [] };
try {
  await client.connect(transport);
  for (const step of plan.steps ?? []) {
    if (step.pause !== undefined) {
      console.log(JSON.stringify({ paused: step.pause }));
      await nextLine();
      continue;
    }
    try {
      const result = await client.callTool({ name: step.name, arguments: step.arguments ?? {} });
      const text = (result.content ?? []).map((part) => part.text ?? "").join(" ");
      out.calls.push({ name: step.name, isError: Boolean(result.isError), text: text.slice(0, 300) });
    } catch (err) {
      out.calls.push({ name: step.name, error: describe(err) });
    }
  }
} catch (err) {
  out.error = describe(err);
} finally {
  await client.close().catch(() => {});
}
out.tokenRequests = tokenRequests;
console.log(JSON.stringify(out));
process.exit(0);
