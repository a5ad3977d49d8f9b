/**
 * Configuration at fleet scale: the FC initializer (`index.initialize` of dist/broker/index.js) in a
 * fresh process, with `clusters` configured clusters (each its own issuer and inline JWKS, two
 * registries) read from BROKER_CONFIG_FILE. Reports the initializer's own time (median of `runs`) and
 * the process's peak RSS, the figures that decide whether an instance starts within its limits.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { promisify } from "node:util";
import { createFleet, fleetBrokerConfig } from "./fleet.ts";
import { repoPath, repoRoot, runTimed } from "./processes.ts";
import { median } from "./results.ts";

export interface ConfigScaleOptions {
  clusters: number;
  runs: number;
  /** An already built bundle; by default `node build.mjs broker` builds dist/broker/index.js. */
  bundleFile?: string;
  log?: (line: string) => void;
}

export const configScaleDefaults: ConfigScaleOptions = { clusters: 10_000, runs: 5 };

export interface ConfigScaleResult {
  clusters: number;
  configBytes: number;
  initMs: number;
  peakRssMb: number;
}

export async function measureConfigScale(options: ConfigScaleOptions): Promise<ConfigScaleResult> {
  const log = options.log ?? (() => {});
  const bundleFile = options.bundleFile ?? repoPath("dist/broker/index.js");
  if (options.bundleFile === undefined) await promisify(execFile)(process.execPath, [repoPath("build.mjs"), "broker"], { cwd: repoRoot });
  const dir = await mkdtemp(join(tmpdir(), "acr-bench-config-"));
  try {
    await copyFile(bundleFile, join(dir, "index.js"));
    // The files the bundle requires on demand (the SDKs, the YAML parser) sit next to it, as they are deployed.
    const others = (await readdir(dirname(bundleFile))).filter((name) => name.endsWith(".js") && name !== basename(bundleFile));
    for (const name of others) await copyFile(join(dirname(bundleFile), name), join(dir, name));
    const fleet = await createFleet(options.clusters, { alg: "ES256", prefix: "scale" });
    const text = JSON.stringify(fleetBrokerConfig(fleet, { sts: "sts.aliyuncs.com", cr: "cr.{regionId}.aliyuncs.com" }));
    await writeFile(join(dir, "broker.json"), text);
    const env = { PATH: process.env.PATH, NODE_PATH: "", LOG_LEVEL: "info", BROKER_CONFIG_FILE: "broker.json", FC_FUNC_CODE_PATH: dir };
    const initMs: number[] = [];
    const rssKb: number[] = [];
    for (let run = 0; run < options.runs; run++) {
      const result = await runTimed(process.execPath, [repoPath("bench/servers/initialize-probe.mjs"), join(dir, "index.js")], {
        env,
        cwd: dir,
        peakRss: true,
      });
      if (result.code !== 0) throw new Error(`the initializer exited with ${result.code}: ${result.stderr.slice(-1000)}`);
      const probe = result.stdout.split("\n").find((line) => line.startsWith('{"initMs"'));
      if (!probe) throw new Error(`the initializer printed no timing: ${result.stdout.slice(-500)}`);
      initMs.push((JSON.parse(probe) as { initMs: number }).initMs);
      rssKb.push(result.peakRssKb!);
      // The "broker ready" line must not grow with the fleet.
      const longest = Math.max(...result.stdout.split("\n").map((line) => line.length));
      if (longest > 2000) throw new Error(`a log line of ${longest} characters at ${options.clusters} clusters: start-up logs must not grow with the fleet`);
    }
    const result = { clusters: options.clusters, configBytes: Buffer.byteLength(text), initMs: median(initMs), peakRssMb: median(rssKb) / 1024 };
    log(
      `config scale: ${result.clusters} clusters, ${(result.configBytes / 1e6).toFixed(1)} MB: initializer ${result.initMs.toFixed(0)} ms, peak RSS ${result.peakRssMb.toFixed(0)} MiB (medians of ${options.runs})`,
    );
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** `tsx bench/config-scale.ts [clusters]`: this section alone. */
if (import.meta.url === `file://${process.argv[1]}`) {
  const clusters = Number(process.argv[2] ?? configScaleDefaults.clusters);
  await measureConfigScale({ ...configScaleDefaults, clusters, log: console.log });
}
