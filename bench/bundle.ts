/**
 * The deployable broker: `npm run build` (node build.mjs), the size of dist/broker (index.js, and
 * upstream.js with the SDKs that index.js requires on its first upstream call), and its cold start —
 * a fresh node loading the bundle from a directory without node_modules, parsing a configuration of
 * `clusters` clusters and answering one FC event — against `node -e 0`, alternated.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { createFleet, fleetBrokerConfig } from "./fleet.ts";
import { repoPath, repoRoot, runTimed } from "./processes.ts";
import { median } from "./results.ts";

export interface BundleOptions {
  runs: number;
  clusters: number;
  /** An already built bundle to measure (with the .js files beside it); by default `node build.mjs broker` builds dist/broker. */
  bundleFile?: string;
  log?: (line: string) => void;
}

export const bundleDefaults: BundleOptions = { runs: 15, clusters: 100 };

export interface BundleResult {
  brokerBytes: number;
  coldInitRatio: number;
  coldInitMs: number;
  nodeMs: number;
}

export async function measureBundle(options: BundleOptions): Promise<BundleResult> {
  const log = options.log ?? (() => {});
  const bundleFile = options.bundleFile ?? repoPath("dist/broker/index.js");
  if (options.bundleFile === undefined) await promisify(execFile)(process.execPath, [repoPath("build.mjs"), "broker"], { cwd: repoRoot });
  const others =
    options.bundleFile === undefined ? (await readdir(dirname(bundleFile))).filter((name) => name.endsWith(".js") && name !== basename(bundleFile)) : [];
  let brokerBytes = (await stat(bundleFile)).size;
  for (const name of others) brokerBytes += (await stat(join(dirname(bundleFile), name))).size;

  const dir = await mkdtemp(join(tmpdir(), "acr-bench-bundle-"));
  try {
    await copyFile(bundleFile, join(dir, "index.js"));
    for (const name of others) await copyFile(join(dirname(bundleFile), name), join(dir, name));
    const fleet = await createFleet(options.clusters, { alg: "ES256", prefix: "cold" });
    const env = {
      PATH: process.env.PATH,
      NODE_PATH: "",
      LOG_LEVEL: "error",
      BROKER_CONFIG: JSON.stringify(fleetBrokerConfig(fleet, { sts: "sts.aliyuncs.com", cr: "cr.{regionId}.aliyuncs.com" })),
    };
    const probe = [repoPath("bench/servers/cold-init-probe.mjs"), join(dir, "index.js")];
    const bare = ["-e", "0"];
    const coldInit: number[] = [];
    const node: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      const order = run % 2 === 0 ? [probe, bare] : [bare, probe];
      for (const args of order) {
        const result = await runTimed(process.execPath, args, { env, cwd: dir });
        if (result.code !== 0) throw new Error(`node ${args.join(" ")} exited with ${result.code}: ${result.stderr.slice(-1000)}`);
        (args === probe ? coldInit : node).push(result.wallMs);
      }
    }
    const coldInitMs = median(coldInit);
    const nodeMs = median(node);
    log(`bundle: ${brokerBytes} bytes; cold init ${coldInitMs.toFixed(0)} ms, node -e 0 ${nodeMs.toFixed(0)} ms (medians of ${options.runs})`);
    return { brokerBytes, coldInitRatio: coldInitMs / nodeMs, coldInitMs, nodeMs };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
