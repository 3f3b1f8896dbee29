// Verify an mcp-warden access token with npm `jose`, as any Node resource server would.
//
// Usage: node jwt_verify.mjs JWKS_FILE ISSUER AUDIENCE < token
// Prints {"payload": ..., "protectedHeader": ...} and exits 0, or prints the
// jose error code and exits 1.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [jwksFile, issuer, audience] = process.argv.slice(2);
if (!jwksFile || !issuer || !audience) {
  console.error("usage: node jwt_verify.mjs JWKS_FILE ISSUER AUDIENCE < token");
  process.exit(2);
}
const token = readFileSync(0, "utf8").trim();
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksFile, "utf8")));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: ["EdDSA"],
    typ: "at+jwt",
    issuer,
    audience,
    requiredClaims: ["iss", "sub", "aud", "iat", "exp", "jti"],
  });
  console.log(JSON.stringify({ payload, protectedHeader }));
} catch (err) {
  console.log(JSON.stringify({ error: err.code ?? err.name }));
  process.exit(1);
}
