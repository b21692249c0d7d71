// Validate glTF/GLB files with the Khronos glTF validator; prints one JSON summary per file, exit 1 on errors.
// Usage: node tools/validate_gltf.mjs FILE...   (needs `npm ci --prefix tools`)
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

let failed = false;
for (const file of process.argv.slice(2)) {
  const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), { maxIssues: 100 });
  const { numErrors, numWarnings, numInfos, numHints, messages } = report.issues;
  console.log(JSON.stringify({ file, numErrors, numWarnings, numInfos, numHints,
    messages: messages.map((m) => `${m.code} ${m.pointer ?? ""} ${m.message}`) }));
  if (numErrors > 0) failed = true;
}
process.exit(failed ? 1 : 0);
