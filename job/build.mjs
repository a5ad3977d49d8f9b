// Bundles the refresher into one ESM file for its container image: `node job/build.mjs [OUTFILE]`.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { build } from "esbuild";
import { fileURLToPath, pathToFileURL } from "node:url";

export const defaultOutfile = fileURLToPath(new URL("../dist/job/refresher.mjs", import.meta.url));

/** Writes the bundle; the root `build.mjs` (`npm run build`) calls this too. */
export async function buildRefresher(outfile = defaultOutfile) {
  await build({
    entryPoints: [fileURLToPath(new URL("main.ts", import.meta.url))],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "esm",
    minify: true,
    sourcemap: false,
    legalComments: "none",
    // tr46 (under the Kubernetes client's node-fetch) requires Node's built-in punycode, which Node 22
    // and later deprecate with a warning on every start; the userland package is the same code.
    alias: { punycode: createRequire(import.meta.url).resolve("punycode/punycode.js") },
    // Some dependencies are CommonJS and call require() for Node built-ins.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    // `doctor` in the image compares the refresher's RBAC with the manifest it ships with.
    define: { ACR_REFRESHER_RBAC_YAML: JSON.stringify(readFileSync(fileURLToPath(new URL("deploy/base/rbac.yaml", import.meta.url)), "utf8")) },
    logLevel: "warning",
  });
  process.stdout.write(`build: wrote ${outfile}\n`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await buildRefresher(process.argv[2]);
