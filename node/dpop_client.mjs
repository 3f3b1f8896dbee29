// The official TypeScript SDK 2.x client (@modelcontextprotocol/client) with its own DPoP
// (RFC 9449, SEP-1932): a ClientCredentialsProvider whose dpop() returns a DpopSession gets a
// proof signed into its token request, and a fresh proof on every MCP request.
//
// Usage: MCP_CLIENT_SECRET=... node dpop_client.mjs < plan
//   plan, one JSON object:
//     {"issuer": "https://...",        the issuer the client expects (expectedIssuer)
//      "clientId": "...",
//      "alg": "ES256" | "EdDSA",       optional: the SDK's default is ES256
//      "resource": "https://.../mcp",  token mode: the RFC 8707 resource to ask for
//      "mcpUrl": "https://.../mcp",    optional: connect there and make the calls
//      "replicas": ["http://127.0.0.1:PORT", ...],  optional, with mcpUrl: a load balancer that
//                                      sends mcpUrl's origin to each replica in turn (one
//                                      connection per replica, one session and one token for all;
//                                      proofs still name mcpUrl, the URL the client addresses)
//      "calls": [{"name", "arguments"}]}
// Without mcpUrl it fetches one token (RFC 8414 discovery, then the token request) and prints
//   {"tokenType", "alg", "jkt" (the session key's RFC 7638 thumbprint), "accessToken", "dpopHeaders"}
// With mcpUrl it connects (the SDK discovers the issuer from the server's 401) and prints
//   {"calls": [{"name", "isError", "text"} | {"name", "error"}], "alg", "jkt", "tokenType", "accessToken",
//    "dpopHeaders"}
// (with replicas, each call also names its replica: "via", and an error names it too)
// dpopHeaders counts the requests that carried a DPoP header (token and MCP requests).
// The secret comes from the environment, never argv.
import { readFileSync } from "node:fs";
import {
  Client,
  ClientCredentialsProvider,
  DpopSession,
  StreamableHTTPClientTransport,
  discoverAuthorizationServerMetadata,
  fetchToken,
} from "@modelcontextprotocol/client";

const plan = JSON.parse(readFileSync(0, "utf8"));

class DpopClientCredentials extends ClientCredentialsProvider {
  constructor(options, session) {
    super(options);
    this.session = session;
  }

  dpop() {
    return this.session;
  }
}

const session = await DpopSession.create(plan.alg ? { alg: plan.alg } : {});
const provider = new DpopClientCredentials(
  { clientId: plan.clientId, clientSecret: process.env.MCP_CLIENT_SECRET, expectedIssuer: plan.issuer },
  session,
);

let dpopHeaders = 0;
let via = null; // the replica that mcpUrl's origin goes to now (replicas mode)
const counting = (input, init) => {
  const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
  if (headers.has("dpop")) dpopHeaders += 1;
  if (via !== null) {
    const url = new URL(input instanceof Request ? input.url : input);
    if (url.origin === new URL(plan.mcpUrl).origin) {
      const routed = new URL(url.pathname + url.search, via);
      return fetch(input instanceof Request ? new Request(routed, input) : routed, init);
    }
  }
  return fetch(input, init);
};

function describe(err) {
  return { name: err?.name, code: err?.code, message: String(err?.message ?? err).slice(0, 300) };
}

if (!plan.mcpUrl) {
  const metadata = await discoverAuthorizationServerMetadata(plan.issuer, { fetchFn: counting });
  try {
    const tokens = await fetchToken(provider, plan.issuer, {
      metadata,
      resource: plan.resource ? new URL(plan.resource) : undefined,
      fetchFn: counting,
    });
    console.log(
      JSON.stringify({
        tokenType: tokens.token_type,
        alg: session.alg,
        jkt: session.thumbprint,
        accessToken: tokens.access_token,
        dpopHeaders,
      }),
    );
  } catch (err) {
    console.log(JSON.stringify({ error: describe(err), dpopHeaders }));
  }
} else {
  const calls = [];
  try {
    for (const replica of plan.replicas ?? [null]) {
      via = replica;
      const client = new Client({ name: "dpop-client", version: "1.0.0" });
      const transport = new StreamableHTTPClientTransport(new URL(plan.mcpUrl), {
        authProvider: provider,
        fetch: counting,
      });
      await client.connect(transport);
      for (const call of plan.calls ?? []) {
        const where = replica === null ? {} : { via: replica };
        try {
          const result = await client.callTool({ name: call.name, arguments: call.arguments ?? {} });
          const text = (result.content ?? []).map((c) => c.text ?? "").join("");
          calls.push({ name: call.name, ...where, isError: Boolean(result.isError), text: text.slice(0, 2000) });
        } catch (err) {
          calls.push({ name: call.name, ...where, error: describe(err) });
        }
      }
      await client.close();
    }
    const tokens = provider.tokens();
    console.log(
      JSON.stringify({
        calls,
        alg: session.alg,
        jkt: session.thumbprint,
        tokenType: tokens?.token_type,
        accessToken: tokens?.access_token,
        dpopHeaders,
      }),
    );
  } catch (err) {
    console.log(JSON.stringify({ error: { ...describe(err), via }, calls, dpopHeaders }));
  }
}
