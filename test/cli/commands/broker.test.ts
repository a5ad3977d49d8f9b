/**
 * `acr-credential broker`: the FC handler served over node:http, the broker's identity from the
 * Alibaba Cloud default credential chain (here: its environment variables), the emulator as cloud.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../../functions/broker/support/clusters.ts";
import { brokerUser, brokerWorld } from "../../functions/broker/support/world.ts";
import { cli, start, type Running } from "./support.ts";

let dir: string;
let emulator: Emulator;
let cluster: TestCluster;
let broker: Running;
let url: string;
/** A clean environment: no profile of the machine's user, no metadata service. */
const baseEnv = () => ({ PATH: process.env.PATH, HOME: dir, ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true" });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acr-broker-cli-"));
  cluster = await createTestCluster("cli");
  emulator = await startEmulator({ world: brokerWorld(cluster) });
  await writeFile(
    join(dir, "broker.yaml"),
    JSON.stringify({
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "cli", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] }],
    }),
  );
  broker = start(["broker", "--config", join(dir, "broker.yaml"), "--port", "0"], {
    ...baseEnv(),
    ALIBABA_CLOUD_ACCESS_KEY_ID: brokerUser.accessKeyId,
    ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerUser.accessKeySecret,
  });
  url = (await broker.waitFor(/listening on (http:\/\/\S+)/, "stderr"))[1]!;
}, 60_000);

afterAll(async () => {
  await broker?.stop("SIGTERM");
  await emulator?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("acr-credential broker", () => {
  it("answers GET /healthz", async () => {
    const response = await fetch(`${url}/healthz`);
    expect(response.status).toBe(200);
    expect(response.headers.get("cache-control")).toBe("no-store");
    const { version } = JSON.parse(await readFile(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string };
    expect(await response.json()).toEqual({ status: "ok", version });
  });

  it("issues credentials as the identity of the default credential chain", async () => {
    const response = await fetch(`${url}/v1/credentials`, {
      method: "POST",
      headers: { authorization: `Bearer ${await cluster.mint()}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as CredentialsResponse;
    expect(body.credentials[0]).toMatchObject({ regionId: "cn-beijing", edition: "personal" });
    expect(emulator.log.filter({ api: "cr:GetPersonalAuthorizationToken" }).map((e) => e.principal)).toEqual(["acs:ram::1000000000000001:user/broker"]);
    await broker.waitFor(/"msg":"request"/);
    expect(broker.stdout()).not.toContain(body.credentials[0]!.password);
  });

  it("answers a bad token with 401 and WWW-Authenticate over plain HTTP too", async () => {
    const response = await fetch(`${url}/v1/credentials`, { method: "POST", headers: { authorization: "Bearer x.y.z" }, body: "{}" });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe('Bearer error="invalid_token"');
    expect(response.headers.get("x-request-id")).toBeTruthy();
  });

  it("refuses a body over 64 KiB with 413", async () => {
    const response = await fetch(`${url}/v1/credentials`, { method: "POST", headers: { authorization: "Bearer x" }, body: "x".repeat(70_000) });
    expect(response.status).toBe(413);
  });

  it("writes the log line of every request it answered before it exits on SIGTERM", async () => {
    const second = start(["broker", "--config", join(dir, "broker.yaml"), "--port", "0"], {
      ...baseEnv(),
      ALIBABA_CLOUD_ACCESS_KEY_ID: brokerUser.accessKeyId,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerUser.accessKeySecret,
    });
    const secondUrl = (await second.waitFor(/listening on (http:\/\/\S+)/, "stderr"))[1]!;
    const statuses = await Promise.all(Array.from({ length: 300 }, () => fetch(`${secondUrl}/healthz`).then((r) => r.status)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(await second.stop("SIGTERM")).toBe(0);
    const lines = second
      .stdout()
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { msg: string; path?: string; status?: number });
    expect(lines.filter((line) => line.msg === "request" && line.path === "/healthz" && line.status === 200)).toHaveLength(300);
  });

  it("stops without credentials: one line naming the fix, exit 2", async () => {
    const result = await cli(["broker", "--config", join(dir, "broker.yaml"), "--port", "0"], { env: baseEnv() });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/no Alibaba Cloud credentials.*ALIBABA_CLOUD_ACCESS_KEY_ID.*\[ConfigInvalid\]/);
  });

  it("stops on an invalid configuration: one line with the file and the field, exit 2", async () => {
    await writeFile(join(dir, "bad.yaml"), "audience: x\nclusters:\n  - name: Bad Name\n    issuer: https://x.test\n    subjects: [s]\n");
    const result = await cli(["broker", "--config", join(dir, "bad.yaml")], { env: baseEnv() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/bad\.yaml: clusters\[0\]\.name: expected a name/);
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});

describe("acr-credential token", () => {
  it("names the missing sandbox cluster and how to create it", async () => {
    const result = await cli(["token", "--cluster", "nope", "--state-dir", dir]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/no sandbox cluster 'nope'.*npm start.*\[FileUnreadable\]/);
  });

  it("refuses a --ttl that is not a number of seconds", async () => {
    const result = await cli(["token", "--ttl", "ten"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--ttl must be a whole number/);
  });
});

describe("acr-credential renew", () => {
  it("needs --function NAME", async () => {
    const result = await cli(["renew"], { env: baseEnv() });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--function NAME is required/);
  });

  it("reports a function that does not exist in one line", async () => {
    const result = await cli(["renew", "--function", "nope", "--account-id", "1000000000000001", "--endpoint", emulator.endpoints.fc], {
      env: { ...baseEnv(), ALIBABA_CLOUD_ACCESS_KEY_ID: brokerUser.accessKeyId, ALIBABA_CLOUD_ACCESS_KEY_SECRET: brokerUser.accessKeySecret },
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/InvokeFunction nope in cn-hangzhou failed/);
  });
});
