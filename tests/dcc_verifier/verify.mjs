// Reads {"hc1": "HC1:...", "keys": [{"kid", "certificate_pem"}]} (the /api/certificates/keys answer)
// on standard input; prints {"status": "...", "dcc": {...}} as @pathcheck/dcc-sdk verifies it.
// The published keys are the only trust: they are cached before verifying, so nothing is fetched.
// Run: node --experimental-detect-module --import ./register.mjs verify.mjs
const DCC = await import("@pathcheck/dcc-sdk/lib/main.js");

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const certs = {};
for (const key of input.keys) {
  certs[key.kid] = key.certificate_pem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
}
DCC.addCachedCerts(certs);
const log = console.log;
console.log = (...args) => process.stderr.write(args.join(" ") + "\n"); // stdout is for the answer
let answer;
try {
  const result = await DCC.unpackAndVerify(input.hc1);
  const contents = result.contents;
  const dcc = contents instanceof Map && contents.get(-260) ? contents.get(-260).get(1) : null;
  answer = { status: result.status, dcc };
} catch (err) {
  answer = { status: "ERROR", error: String((err && err.stack) || err) };
}
console.log = log;
process.stdout.write(JSON.stringify(answer) + "\n");
