// Bundles the deployable artefacts with esbuild: each runs without node_modules (the built-in-runtime
// broker as index.js plus files it requires on demand). `node build.mjs [name...]` builds some; no
// argument builds all.
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, resolve } from "node:path";
import { build } from "esbuild";
import { buildRefresher } from "./job/build.mjs";

const root = new URL(".", import.meta.url);
const at = (path) => new URL(path, root).pathname;

export const artefacts = [
  {
    name: "broker",
    // Function Compute's nodejs20 runtime loads `index.handler` / `index.initialize` with require().
    entry: "functions/broker/index.ts",
    outfile: "dist/broker/index.js",
    format: "cjs",
    maxBytes: 800 * 1024,
    // Modules the code imports dynamically go to files of their own, required when first imported: a
    // cold start neither reads nor compiles them. The SDKs on the first upstream call
    // (shared/alibaba/cloud.ts), the Redis client when a shared cache is configured (cache/redis-store.ts).
    splits: [
      { module: "shared/alibaba/upstream.ts", outfile: "dist/broker/upstream.js", maxBytes: 800 * 1024 },
      { module: "ioredis", outfile: "dist/broker/ioredis.js", maxBytes: 400 * 1024 },
    ],
    // The YAML parser, likewise, is only required when the configuration is YAML rather than JSON.
    lazyPackages: [{ name: "yaml", exports: ["parse"], outfile: "dist/broker/yaml.js" }],
  },
  {
    name: "broker-server",
    // Function Compute's custom runtime starts `node index.mjs` in this folder (s.yaml, customRuntimeConfig).
    entry: "functions/broker/server-main.ts",
    outfile: "dist/broker-server/index.mjs",
    format: "esm",
    // Some dependencies are CommonJS and call require() for Node built-ins.
    banner: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
    maxBytes: 1.5 * 1024 * 1024,
  },
  {
    name: "refresher",
    // The container image's one file (job/Dockerfile); ESM, built by job/build.mjs.
    entry: "job/main.ts",
    build: () => buildRefresher(at("dist/job/refresher.mjs")),
  },
];

/** Resolves the dynamic import of each split's module (a source file or a package) to a require() of its own bundle next to the artefact. */
function splitPlugin(splits) {
  const fileOf = (split) => `./${basename(split.outfile)}`;
  const matches = (split, args) => (split.module.endsWith(".ts") ? resolve(args.resolveDir, args.path) === at(split.module) : args.path === split.module);
  return {
    name: "split",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind !== "dynamic-import" || args.namespace === "split") return undefined;
        const split = splits.find((candidate) => matches(candidate, args));
        return split ? { path: fileOf(split), namespace: "split" } : undefined;
      });
      b.onLoad({ filter: /.*/, namespace: "split" }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: "js" }));
      b.onResolve({ filter: /.*/, namespace: "split" }, (args) => ({ path: args.path, external: true }));
    },
  };
}

/**
 * Replaces a package by a stand-in whose functions require the package's own bundle next to the
 * artefact on their first call, so a process that never calls them never loads it.
 */
function lazyPackagePlugin(lazy) {
  const file = `./${basename(lazy.outfile)}`;
  const contents = [
    `let loaded;`,
    `const load = () => (loaded ??= require(${JSON.stringify(file)}));`,
    ...lazy.exports.map((name) => `exports.${name} = (...args) => load().${name}(...args);`),
  ].join("\n");
  return {
    name: `lazy-${lazy.name}`,
    setup(b) {
      b.onResolve({ filter: new RegExp(`^${lazy.name}$`) }, () => ({ path: lazy.name, namespace: "lazy-package" }));
      b.onLoad({ filter: /.*/, namespace: "lazy-package" }, () => ({ contents, loader: "js" }));
      b.onResolve({ filter: new RegExp(`^${file.replace(".", "\\.")}$`), namespace: "lazy-package" }, () => ({ path: file, external: true }));
    },
  };
}

/**
 * zod's namespace re-exports every message locale (a third of the broker bundle); the broker only
 * uses the English one zod installs by default, so the others are left out.
 */
const englishZodOnly = {
  name: "english-zod-only",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      args.importer.includes("/node_modules/zod/") ? { path: args.path, namespace: "zod-locales", pluginData: args.resolveDir } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "zod-locales" }, (args) => ({
      contents: 'export { default as en } from "../locales/en.js";',
      resolveDir: args.pluginData,
      loader: "js",
    }));
  },
};

async function bundle(artefact) {
  for (const split of artefact.splits ?? []) {
    const from = split.module.endsWith(".ts") ? { entry: split.module } : { source: `module.exports = require(${JSON.stringify(split.module)});` };
    await bundle({ name: `${artefact.name} (${split.module})`, ...from, outfile: split.outfile, format: artefact.format, maxBytes: split.maxBytes });
  }
  for (const lazy of artefact.lazyPackages ?? []) {
    await bundle({
      name: `${artefact.name} (${lazy.name})`,
      source: `export { ${lazy.exports.join(", ")} } from "${lazy.name}";`,
      outfile: lazy.outfile,
      format: artefact.format,
    });
  }
  await build({
    ...(artefact.source ? { stdin: { contents: artefact.source, resolveDir: at("."), loader: "js" } } : { entryPoints: [at(artefact.entry)] }),
    outfile: at(artefact.outfile),
    bundle: true,
    platform: "node",
    target: "node20",
    format: artefact.format,
    minify: true,
    sourcemap: false,
    legalComments: "none",
    logLevel: "warning",
    // The SDKs reach for these only on paths the artefact never takes (proxies, optional codecs).
    external: artefact.external ?? [],
    ...(artefact.banner ? { banner: { js: artefact.banner } } : {}),
    plugins: [englishZodOnly, ...(artefact.splits ? [splitPlugin(artefact.splits)] : []), ...(artefact.lazyPackages ?? []).map(lazyPackagePlugin)],
  });
  const { size } = await stat(at(artefact.outfile));
  const kib = (size / 1024).toFixed(0);
  if (artefact.maxBytes && size > artefact.maxBytes)
    throw new Error(`${artefact.outfile} is ${kib} KiB, over its budget of ${(artefact.maxBytes / 1024).toFixed(0)} KiB`);
  console.log(`build: ${artefact.outfile} (${kib} KiB)`);
}

const wanted = process.argv.slice(2);
const selected = artefacts.filter((a) => (wanted.length === 0 || wanted.includes(a.name)) && existsSync(at(a.entry)));
if (wanted.length > 0 && selected.length !== wanted.length) {
  console.error(`build: unknown artefact in ${wanted.join(", ")}; known: ${artefacts.map((a) => a.name).join(", ")}`);
  process.exit(2);
}
for (const artefact of selected) await (artefact.build ? artefact.build() : bundle(artefact));
