// Builds dist/flywheel-web.js (one minified ES module, no dependencies) and its declarations, and prints its
// size minified and gzipped. tsc checks the types and emits build/ (modules the unit tests import), and checks
// test/types/contract.ts: each event the library sends is the contract's.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const here = new URL(".", import.meta.url).pathname;
rmSync(`${here}build`, { recursive: true, force: true });
rmSync(`${here}dist`, { recursive: true, force: true });
const tsc = (project) => execFileSync(process.execPath, [`${here}node_modules/typescript/bin/tsc`, "-p", project], {
  stdio: "inherit",
});
tsc(`${here}tsconfig.json`);
tsc(`${here}test/types/tsconfig.json`); // the events sent are the contract's (schemas/typescript/events.d.ts)
await build({
  entryPoints: [`${here}src/index.ts`],
  outfile: `${here}dist/flywheel-web.js`,
  bundle: true,
  format: "esm",
  target: "es2020",
  minify: true,
  legalComments: "none",
});
mkdirSync(`${here}dist`, { recursive: true });
for (const name of readdirSync(`${here}build`)) {
  if (name.endsWith(".d.ts")) cpSync(`${here}build/${name}`, `${here}dist/${name}`);
}
const code = readFileSync(`${here}dist/flywheel-web.js`);
const gzipped = gzipSync(code, { level: 9 }).length;
console.log(`dist/flywheel-web.js: ${code.length} bytes minified, ${gzipped} bytes gzipped`);
