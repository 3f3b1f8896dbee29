// DPoP proofs (RFC 9449) with npm `jose`, to check mcp-warden's against another implementation.
//
// Usage:
//   node dpop.mjs make ALG METHOD URL TOKEN   -> {"proof": ..., "jkt": ...}   (ALG: EdDSA | ES256)
//   node dpop.mjs verify METHOD URL TOKEN < proof
//       -> {"jkt": ..., "payload": ...} exit 0, or {"error": ...} exit 1
// `verify` is jose's jwtVerify under the proof's own jwk plus the checks of RFC 9449
// section 4.3 that jose does not make (public jwk only, htm, htu, ath, jti).
import { createHash, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import {
  SignJWT,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
} from "jose";

const ALGS = ["EdDSA", "ES256"];
const PRIVATE = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
const ath = (token) => createHash("sha256").update(token, "ascii").digest("base64url");
const htu = (url) => {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname}`; // WHATWG URL: lower-case, default port dropped
};

const [mode, ...args] = process.argv.slice(2);
if (mode === "make") {
  const [alg, method, url, token] = args;
  const { publicKey, privateKey } = await generateKeyPair(alg, { crv: alg === "EdDSA" ? "Ed25519" : undefined });
  const jwk = await exportJWK(publicKey);
  const proof = await new SignJWT({ htm: method, htu: url, ath: ath(token) })
    .setProtectedHeader({ typ: "dpop+jwt", alg, jwk })
    .setIssuedAt()
    .setJti(randomUUID())
    .sign(privateKey);
  console.log(JSON.stringify({ proof, jkt: await calculateJwkThumbprint(jwk) }));
} else if (mode === "verify") {
  const [method, url, token] = args;
  const proof = readFileSync(0, "utf8").trim();
  try {
    const header = decodeProtectedHeader(proof);
    if (!ALGS.includes(header.alg)) throw Object.assign(new Error(), { code: "alg" });
    if (!header.jwk || PRIVATE.some((m) => m in header.jwk)) throw Object.assign(new Error(), { code: "jwk" });
    const key = await importJWK(header.jwk, header.alg);
    const { payload } = await jwtVerify(proof, key, {
      typ: "dpop+jwt",
      algorithms: ALGS,
      maxTokenAge: "60s",
      clockTolerance: 5,
      requiredClaims: ["jti", "htm", "htu", "iat"],
    });
    if (payload.htm !== method) throw Object.assign(new Error(), { code: "htm" });
    if (htu(payload.htu) !== htu(url)) throw Object.assign(new Error(), { code: "htu" });
    if (payload.ath !== ath(token)) throw Object.assign(new Error(), { code: "ath" });
    if (typeof payload.jti !== "string" || !payload.jti) throw Object.assign(new Error(), { code: "jti" });
    console.log(JSON.stringify({ jkt: await calculateJwkThumbprint(header.jwk), payload }));
  } catch (err) {
    console.log(JSON.stringify({ error: err.code ?? err.name }));
    process.exit(1);
  }
} else {
  console.error("usage: node dpop.mjs make ALG METHOD URL TOKEN | verify METHOD URL TOKEN < proof");
  process.exit(2);
}
