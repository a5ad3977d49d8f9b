/**
 * The built broker answering real credential requests through the FC 3.0 model: the built-in
 * handler bundle (`dist/broker/index.js`, built here when missing) with the execution role's
 * `context.credentials`, and the custom-runtime server with the role's ALIBABA_CLOUD_* variables.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchWorld, createFleet, credentialsBody, executionRole, fleetBrokerConfig, registries, type FleetCluster } from "../../bench/fleet.ts";
import { customServer } from "../../bench/fleet-configs.ts";
import { startHttpTrigger, type FunctionSpec, type HttpTrigger } from "../../emulator/fc-runtime/trigger.ts";
import { startEmulator, type Emulator } from "../../emulator/index.ts";

const repo = fileURLToPath(new URL("../..", import.meta.url));
let emulator: Emulator;
let work: string;
let fleet: FleetCluster[];
let configFile: string;

beforeAll(async () => {
  if (!existsSync(join(repo, "dist/broker/index.js"))) {
    const built = spawnSync(process.execPath, ["build.mjs", "broker"], { cwd: repo, encoding: "utf8" });
    if (built.status !== 0) throw new Error(`node build.mjs broker failed: ${built.stderr}`);
  }
  emulator = await startEmulator({ world: benchWorld() });
  work = await mkdtemp(join(tmpdir(), "fc-broker-"));
  fleet = await createFleet(2, { alg: "ES256", prefix: "fc" });
  configFile = join(work, "broker.json");
  await writeFile(configFile, JSON.stringify(fleetBrokerConfig(fleet, emulator.endpoints)));
});
afterAll(async () => {
  await emulator?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function fetchCredentials(trigger: HttpTrigger, cluster: FleetCluster) {
  const response = await fetch(`${trigger.url}/v1/credentials`, {
    method: "POST",
    headers: { authorization: `Bearer ${cluster.token}`, "content-type": "application/json" },
    body: credentialsBody,
  });
  return {
    status: response.status,
    body: (await response.json()) as { cluster?: string; credentials?: { instanceId: string; password: string }[]; code?: string },
  };
}

async function withTrigger(spec: FunctionSpec, use: (trigger: HttpTrigger) => Promise<void>) {
  const trigger = await startHttpTrigger(spec, { clock: emulator.clock, assumeRoleForService: emulator.assumeRoleForService });
  try {
    await use(trigger);
  } finally {
    await trigger.close();
  }
}

describe("the built broker through the FC 3.0 model", () => {
  it("built-in runtime: dist/broker answers a credential request with the execution role's credentials as its base identity", async () => {
    emulator.log.clear();
    const spec: FunctionSpec = {
      functionName: "broker",
      runtime: "nodejs20",
      codeDir: join(repo, "dist/broker"),
      role: executionRole,
      environmentVariables: { BROKER_CONFIG_FILE: configFile },
    };
    await withTrigger(spec, async (trigger) => {
      const first = await fetchCredentials(trigger, fleet[0]!);
      expect(first.body).toMatchObject({ cluster: fleet[0]!.name });
      expect(first.status).toBe(200);
      expect(first.body.cluster).toBe(fleet[0]!.name);
      expect(first.body.credentials?.map((c) => c.instanceId)).toEqual(registries.map((r) => r.instanceId));
      const second = await fetchCredentials(trigger, fleet[1]!);
      expect(second.status).toBe(200);
      // Sequential requests: one instance, whose cache served the second cluster.
      expect(trigger.fn.counters()).toMatchObject({ invocations: 2, coldStarts: 1 });
      expect(second.body.credentials?.map((c) => c.password)).toEqual(first.body.credentials?.map((c) => c.password));
    });
    const assumed = emulator.log.entries.filter((e) => e.api === "sts:AssumeRole");
    expect(assumed).toHaveLength(1);
    expect(assumed[0]!.principal).toContain("fc-broker");
  });

  it("custom runtime: the broker's HTTP server answers with the role's ALIBABA_CLOUD_* credentials, several requests on one instance", async () => {
    emulator.log.clear();
    const { codeDir, customRuntimeConfig } = customServer(repo);
    const spec: FunctionSpec = {
      functionName: "broker-server",
      runtime: "custom.debian11",
      codeDir,
      customRuntimeConfig,
      role: executionRole,
      instanceConcurrency: 10,
      environmentVariables: { BROKER_CONFIG_FILE: configFile },
    };
    await withTrigger(spec, async (trigger) => {
      const answers = await Promise.all([fleet[0]!, fleet[1]!, fleet[0]!].map((cluster) => fetchCredentials(trigger, cluster)));
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      expect(trigger.fn.counters()).toMatchObject({ invocations: 3, coldStarts: 1, peakInstances: 1 });
    });
    const assumed = emulator.log.entries.filter((e) => e.api === "sts:AssumeRole");
    expect(assumed).toHaveLength(1);
    expect(assumed[0]!.principal).toContain("fc-broker");
  });
});
