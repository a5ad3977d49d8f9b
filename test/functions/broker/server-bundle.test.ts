/**
 * The custom-runtime artefact: `npm run build` writes dist/broker-server/index.mjs, started as
 * `node index.mjs` in a folder without node_modules, as FC's custom runtime does. It runs on the
 * Node.js LTS the deployment ships (test/lts/NODE_VERSION) and on this machine's Node 20, and hands
 * out a credential from the emulator.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { startRedisServer } from "../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { brokerUser, brokerWorld, strangerUser } from "./support/world.ts";

const run = promisify(execFile);
const repo = new URL("../../../", import.meta.url).pathname;

let dir: string;
let emulator: Emulator;
let cluster: TestCluster;
let ltsNode: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  await run(process.execPath, [join(repo, "build.mjs"), "broker-server"], { cwd: repo });
  ltsNode = (await run("bash", [join(repo, "test/lts/node.sh")], { cwd: repo })).stdout.trim();
  dir = await mkdtemp(join(tmpdir(), "broker-server-"));
  await copyFile(join(repo, "dist/broker-server/index.mjs"), join(dir, "index.mjs"));
  cluster = await createTestCluster("custom");
  emulator = await startEmulator({ world: brokerWorld(cluster) });
}, 180_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await emulator?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const config = () => ({
  audience: "acr-credential-broker",
  alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
  clusters: [{ name: "custom", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] }],
});

/** What FC sets for a custom runtime: the listening port and the execution role's keys. */
const fcEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  NODE_PATH: "",
  FC_CUSTOM_LISTEN_PORT: "0",
  ALIBABA_CLOUD_ACCESS_KEY_ID: brokerUser.accessKeyId,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerUser.accessKeySecret,
  ...extra,
});

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

function start(node: string, env: NodeJS.ProcessEnv): Promise<Started> {
  const child = spawn(node, ["index.mjs"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let output = "";
  return new Promise((resolve, reject) => {
    const read = (chunk: Buffer) => {
      output += chunk.toString("utf8");
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve({ child, url: match[1]!, output: () => output });
    };
    child.stdout!.on("data", read);
    child.stderr!.on("data", read);
    child.once("exit", (code) => reject(new Error(`index.mjs exited with ${code}: ${output}`)));
  });
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

describe("the custom-runtime artefact dist/broker-server/index.mjs", () => {
  it.each([
    ["the Node.js LTS it ships with", () => ltsNode],
    ["Node.js 20", () => process.execPath],
  ])("serves a credential from the emulator on %s, listening on 0.0.0.0", async (_name, node) => {
    const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" });
    const server = await start(node(), fcEnv({ BROKER_CONFIG: JSON.stringify(config()) }));
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    const response = await fetch(`${server.url}/v1/credentials`, { method: "POST", headers: { authorization: `Bearer ${await cluster.mint()}` }, body: "{}" });
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    expect(response.headers.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    const body = (await response.json()) as { cluster: string; credentials: Array<{ edition: string; password: string }> };
    expect(body).toMatchObject({ cluster: "custom", credentials: [{ edition: "personal", password: expect.any(String) }] });
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" })).toBe(before + 1);
    server.child.kill("SIGTERM");
    expect(await exited(server.child)).toBe(0);
    // One request line per request, written before the process ended.
    expect(
      server
        .output()
        .split("\n")
        .filter((line) => line.includes('"msg":"request"')),
    ).toHaveLength(2);
  });

  it("answers FC's event invocation (POST /invoke, x-fc-control-path: /invoke) with the renew summary, and only that", async () => {
    const server = await start(process.execPath, fcEnv({ BROKER_CONFIG: JSON.stringify(config()) }));
    const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" });
    // What FC sends for InvokeFunction; HTTP clients cannot send x-fc-* headers through FC.
    const invoked = await fetch(`${server.url}/invoke`, {
      method: "POST",
      headers: { "x-fc-control-path": "/invoke", "content-type": "application/octet-stream" },
      body: JSON.stringify({ action: "renew", cluster: "custom" }),
    });
    expect(invoked.status).toBe(200);
    expect(await invoked.json()).toEqual({
      clusters: [{ cluster: "custom", renewed: [{ regionId: "cn-beijing", expiresAt: expect.stringMatching(/^\d{4}-/) }], errors: [] }],
    });
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" })).toBe(before + 1);
    const unknown = await fetch(`${server.url}/invoke`, {
      method: "POST",
      headers: { "x-fc-control-path": "/invoke" },
      body: JSON.stringify({ action: "renew", cluster: "nope" }),
    });
    expect(await unknown.json()).toEqual({ error: { code: "NotFound", message: "no cluster named 'nope' in the broker configuration" } });
    const plain = await fetch(`${server.url}/invoke`, { method: "POST", body: JSON.stringify({ action: "renew" }) });
    expect(plain.status).toBe(404);
    server.child.kill("SIGTERM");
    await exited(server.child);
  });

  it("writes a request line within seconds while it keeps running, though lines are written in batches", async () => {
    const server = await start(process.execPath, fcEnv({ BROKER_CONFIG: JSON.stringify(config()) }));
    await fetch(`${server.url}/healthz`);
    await expect.poll(() => server.output().includes('"msg":"request"'), { timeout: 5_000, interval: 100 }).toBe(true);
    server.child.kill("SIGTERM");
    await exited(server.child);
  });

  it("calls upstream with the execution role's keys FC sends with each request, before the ones it started with", async () => {
    // Started with keys that may not fetch the registry's password; FC's request headers carry ones that may.
    const server = await start(process.execPath, {
      ...fcEnv({ BROKER_CONFIG: JSON.stringify(config()) }),
      ALIBABA_CLOUD_ACCESS_KEY_ID: strangerUser.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: strangerUser.accessKeySecret,
    });
    const token = await cluster.mint();
    // A failed answer is not cached, so the second request calls upstream again.
    const ask = (headers: Record<string, string>) =>
      fetch(`${server.url}/v1/credentials`, { method: "POST", headers: { authorization: `Bearer ${token}`, ...headers }, body: "{}" });
    expect((await ask({})).status).toBe(502);
    expect((await ask({ "x-fc-access-key-id": brokerUser.accessKeyId, "x-fc-access-key-secret": brokerUser.accessKeySecret })).status).toBe(200);
    server.child.kill("SIGTERM");
    await exited(server.child);
  });

  it("answers a burst of 30 clusters at once from one instance with one upstream call (the fleet's aligned minute)", async () => {
    const fleet = await Promise.all(Array.from({ length: 30 }, (_, i) => createTestCluster(`burst-${i}`, { alg: "ES256" })));
    const fleetConfig = {
      ...config(),
      clusters: fleet.map((c) => ({ name: c.name, issuer: c.issuer, jwks: c.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] })),
    };
    const server = await start(process.execPath, fcEnv({ BROKER_CONFIG: JSON.stringify(fleetConfig) }));
    const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" });
    const tokens = await Promise.all(fleet.map((c) => c.mint()));
    const statuses = await Promise.all(
      tokens.map(async (t) => (await fetch(`${server.url}/v1/credentials`, { method: "POST", headers: { authorization: `Bearer ${t}` }, body: "{}" })).status),
    );
    expect(statuses).toEqual(fleet.map(() => 200));
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(before + 1);
    server.child.kill("SIGTERM");
    await exited(server.child);
  });

  it("shares credentials between two instances through Redis with a shared cache, and ends on SIGTERM with its connection open", async () => {
    const redis = await startRedisServer();
    try {
      const shared = { ...config(), sharedCache: { url: redis.url } };
      const env = fcEnv({ BROKER_CONFIG: JSON.stringify(shared), BROKER_CACHE_KEY: `k1:${randomBytes(32).toString("base64")}` });
      const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" });
      const token = await cluster.mint();
      const bodies: unknown[] = [];
      for (const instance of [await start(process.execPath, env), await start(process.execPath, env)]) {
        const response = await fetch(`${instance.url}/v1/credentials`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: "{}" });
        expect(response.status).toBe(200);
        bodies.push(await response.json());
        instance.child.kill("SIGTERM");
        expect(await exited(instance.child)).toBe(0);
      }
      expect(bodies[1]).toEqual(bodies[0]);
      expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(before + 1);
    } finally {
      await redis.close();
    }
  });

  it("reads BROKER_CONFIG_FILE relative to its own folder", async () => {
    await writeFile(join(dir, "broker.json"), JSON.stringify(config()));
    const server = await start(process.execPath, fcEnv({ BROKER_CONFIG_FILE: "broker.json" }));
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    server.child.kill("SIGTERM");
    await exited(server.child);
  });

  it("is what s.yaml's broker-server deploys: index.mjs on custom.debian12 with the official layer of the LTS's major version", async () => {
    const { parse } = await import("yaml");
    const { readFile } = await import("node:fs/promises");
    const props = (parse(await readFile(join(repo, "s.yaml"), "utf8")) as { resources: Record<string, { component: string; props: Record<string, unknown> }> })
      .resources["broker-server"]!;
    const major = (await readFile(join(repo, "test/lts/NODE_VERSION"), "utf8")).trim().split(".")[0];
    expect(props.component).toBe("fc3");
    expect(props.props).toMatchObject({
      runtime: "custom.debian12",
      code: "./dist/broker-server",
      layers: [expect.stringMatching(new RegExp(`^acs:fc:\\$\\{vars\\.region\\}:official:layers/Nodejs${major}/versions/\\d+$`))],
      customRuntimeConfig: { command: [`/opt/nodejs${major}/bin/node`], args: ["index.mjs"], port: 9000, healthCheckConfig: { httpGetUrl: "/healthz" } },
      environmentVariables: { BROKER_CONFIG_FILE: "broker.yaml" },
    });
    expect(props.props.instanceConcurrency).toBeGreaterThan(1);
  });

  it("ends with exit code 2 and one line naming the problem on a bad configuration", async () => {
    const child = spawn(process.execPath, ["index.mjs"], {
      cwd: dir,
      env: fcEnv({ BROKER_CONFIG: JSON.stringify({ audience: "a", clusters: [] }) }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    expect(await exited(child)).toBe(2);
    expect(stderr.trim().split("\n")).toEqual([expect.stringMatching(/^acr-credential broker: BROKER_CONFIG: clusters: .*fix the configuration and restart$/)]);
  });

  it("ends with exit code 2 when FC gave it no execution role keys", async () => {
    const env = fcEnv({ BROKER_CONFIG: JSON.stringify(config()) });
    delete env.ALIBABA_CLOUD_ACCESS_KEY_ID;
    const child = spawn(process.execPath, ["index.mjs"], { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    expect(await exited(child)).toBe(2);
    expect(stderr).toMatch(/ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set; give the function an execution role/);
  });
});
