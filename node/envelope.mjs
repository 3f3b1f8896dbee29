// Node side of the envelope interop tests: the tutorial's JavaScript variant, unchanged.
//
//   MCP_ENCRYPTION_KEY=<64 hex> node envelope.mjs write FILE   < {"name": "value", ...}
//       writes FILE as {name: encrypt(value, key)} (a store, as the tutorial's code would)
//   MCP_ENCRYPTION_KEY=<64 hex> node envelope.mjs add FILE     < {"name": "value", ...}
//       sets those entries in the existing store FILE, keeping the others (a Node service
//       writing into the same JSON: read, encrypt, write back)
//   MCP_ENCRYPTION_KEY=<64 hex> node envelope.mjs read FILE    < ["name", ...]
//       prints {"name": decrypt(JSON.parse(fs.readFileSync(FILE))[name], key), ...}
//
// Values travel as JSON on stdin/stdout so that non-ASCII and empty values survive.
import crypto from "node:crypto";
import fs from "node:fs";

const ALGORITHM = "aes-256-gcm";

// encrypt() and decrypt() are the tutorial's JavaScript variant, verbatim.
function encrypt(text, key) {
  const iv = crypto.randomBytes(16);
  const cipher = crypto.createCipheriv(ALGORITHM, Buffer.from(key, "hex"), iv);
  let encrypted = cipher.update(text, "utf8", "hex");
  encrypted += cipher.final("hex");
  const tag = cipher.getAuthTag().toString("hex");
  return iv.toString("hex") + ":" + tag + ":" + encrypted;
}

function decrypt(data, key) {
  const [ivHex, tagHex, encrypted] = data.split(":");
  const decipher = crypto.createDecipheriv(ALGORITHM, Buffer.from(key, "hex"), Buffer.from(ivHex, "hex"));
  decipher.setAuthTag(Buffer.from(tagHex, "hex"));
  let decrypted = decipher.update(encrypted, "hex", "utf8");
  decrypted += decipher.final("utf8");
  return decrypted;
}

const [command, file] = process.argv.slice(2);
const key = process.env.MCP_ENCRYPTION_KEY;
const input = JSON.parse(fs.readFileSync(0, "utf8"));

if (command === "write") {
  const store = {};
  for (const [name, value] of Object.entries(input)) store[name] = encrypt(value, key);
  fs.writeFileSync(file, JSON.stringify(store, null, 2), { mode: 0o600 });
} else if (command === "add") {
  const store = JSON.parse(fs.readFileSync(file, "utf8"));
  for (const [name, value] of Object.entries(input)) store[name] = encrypt(value, key);
  fs.writeFileSync(file, JSON.stringify(store, null, 2));
} else if (command === "read") {
  const values = {};
  for (const name of input) values[name] = decrypt(JSON.parse(fs.readFileSync(file))[name], key);
  process.stdout.write(JSON.stringify(values));
} else {
  console.error(`usage: node envelope.mjs write|add|read FILE (got ${command})`);
  process.exit(2);
}
