// DPoP proofs (RFC 9449) across implementations, with npm `jose`: make proofs that mcp-warden
// must accept, and check proofs mcp-warden made the way any Node server would.
//
// Usage: node dpop_interop.mjs make|verify < plan
//   make:   plan {"proofs": [{"alg": "EdDSA" | "ES256", "htm", "htu", "accessToken"?}]}
//           prints {"proofs": [{"proof", "jkt"}]}: each with a fresh key pair, jti and iat,
//           `ath` when an access token is given; jkt is jose's RFC 7638 thumbprint.
//   verify: plan {"now": seconds, "window": [past, future],
//                 "proofs": [{"proof", "htm", "htu", "accessToken"?}]}
//           prints {"results": [{"jkt"} | {"error"}]}: jose's jwtVerify with EmbeddedJWK
//           (typ dpop+jwt, EdDSA or ES256), then the RFC 9449 section 4.3 checks.
// Tokens and proofs come on stdin, never argv.
import { readFileSync } from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import {
  EmbeddedJWK,
  SignJWT,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  jwtVerify,
} from "jose";

const ALGS = ["EdDSA", "ES256"];
const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

const b64url = (bytes) => Buffer.from(bytes).toString("base64url");
const ath = (token) => b64url(createHash("sha256").update(token, "ascii").digest());

// RFC 9449 section 4.3 step 9: htu compared without query and fragment, after normalization.
function normalizeHtu(url) {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

async function make(spec) {
  const { publicKey, privateKey } = await generateKeyPair(spec.alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  const claims = { htm: spec.htm, htu: spec.htu };
  if (spec.accessToken) claims.ath = ath(spec.accessToken);
  const proof = await new SignJWT(claims)
    .setProtectedHeader({ typ: "dpop+jwt", alg: spec.alg, jwk })
    .setJti(b64url(randomBytes(16)))
    .setIssuedAt()
    .sign(privateKey);
  return { proof, jkt: await calculateJwkThumbprint(jwk, "sha256") };
}

async function verify(spec, now, [past, future]) {
  const header = decodeProtectedHeader(spec.proof);
  if (typeof header.jwk !== "object" || PRIVATE_MEMBERS.some((m) => m in header.jwk)) {
    return { error: "private_or_missing_jwk" };
  }
  const { payload } = await jwtVerify(spec.proof, EmbeddedJWK, {
    typ: "dpop+jwt",
    algorithms: ALGS,
    requiredClaims: ["jti", "htm", "htu", "iat"],
    currentDate: new Date(now * 1000),
    clockTolerance: future,
  });
  if (typeof payload.jti !== "string" || payload.jti.length === 0) return { error: "jti" };
  if (payload.htm !== spec.htm) return { error: "htm" };
  if (normalizeHtu(payload.htu) !== normalizeHtu(spec.htu)) return { error: "htu" };
  if (!(payload.iat >= now - past && payload.iat <= now + future)) return { error: "iat" };
  if (spec.accessToken !== undefined && payload.ath !== ath(spec.accessToken)) {
    return { error: "ath" };
  }
  return { jkt: await calculateJwkThumbprint(header.jwk, "sha256") };
}

const [mode] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(0, "utf8"));
if (mode === "make") {
  const proofs = [];
  for (const spec of plan.proofs) proofs.push(await make(spec));
  console.log(JSON.stringify({ proofs }));
} else if (mode === "verify") {
  const results = [];
  for (const spec of plan.proofs) {
    try {
      results.push(await verify(spec, plan.now, plan.window));
    } catch (err) {
      results.push({ error: err.code ?? err.name });
    }
  }
  console.log(JSON.stringify({ results }));
} else {
  console.error("usage: node dpop_interop.mjs make|verify < plan");
  process.exit(2);
}
