import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../../../functions/broker/config.ts";
import { createRuntime } from "../../../../functions/broker/runtime.ts";
import { cli } from "../../../cli/commands/support.ts";
import { thrownBy } from "../../../support/errors.ts";

const base = {
  audience: "acr-credential-broker",
  clusters: [
    {
      name: "prod",
      issuer: "https://oidc.example.test/c1",
      jwks: { keys: [{ kty: "RSA", kid: "k", n: "AQAB", e: "AQAB" }] },
      subjects: ["system:serviceaccount:kube-system:helper"],
      registries: [{ regionId: "cn-beijing" }],
    },
  ],
};
const withShared = (sharedCache: unknown) => ({ ...base, sharedCache });
const goodKey = `k1:${randomBytes(32).toString("base64")}`;

describe("sharedCache in the broker configuration", () => {
  it("is optional, and fills in its defaults when set", () => {
    expect(parseConfig(base, "test").sharedCache).toBeUndefined();
    expect(parseConfig(withShared({ url: "redis://r-bp1abc.redis.rds.aliyuncs.com:6379" }), "test").sharedCache).toEqual({
      url: "redis://r-bp1abc.redis.rds.aliyuncs.com:6379",
      keyPrefix: "acr-credential-broker:",
      operationTimeoutMs: 250,
      leaseSeconds: 15,
      breakerFailures: 3,
      breakerCoolDownSeconds: 10,
    });
  });

  it("accepts rediss:// (TLS), a user and password, and a database number", () => {
    expect(parseConfig(withShared({ url: "rediss://broker:pw@r-bp1abc.redis.rds.aliyuncs.com:6380/2" }), "test").sharedCache?.url).toMatch(/^rediss:/);
  });

  it.each([
    ["an http URL", { url: "http://r-bp1abc:6379" }, "sharedCache.url: expected redis://host:6379 or rediss://host:6380"],
    ["no URL", {}, "sharedCache.url"],
    ["a path that is not a db number", { url: "redis://host:6379/cache" }, "sharedCache.url"],
    ["a key prefix with spaces", { url: "redis://host", keyPrefix: "my broker" }, "sharedCache.keyPrefix"],
    ["a zero timeout", { url: "redis://host", operationTimeoutMs: 0 }, "sharedCache.operationTimeoutMs"],
    ["an unknown field", { url: "redis://host", password: "x" }, "sharedCache"],
  ])("refuses %s, naming the field", (_label, shared, message) => {
    const error = thrownBy(() => parseConfig(withShared(shared), "broker.yaml"));
    expect(error.code).toBe("ConfigInvalid");
    expect(error.message).toContain(`broker.yaml: ${message}`);
  });

  it("makes a missing or malformed BROKER_CACHE_KEY a start-up error of the runtime", () => {
    const loaded = { config: parseConfig(withShared({ url: "redis://127.0.0.1:1" }), "test"), baseDir: ".", source: "test" };
    expect(thrownBy(() => createRuntime({ loaded, env: {} })).message).toMatch(/BROKER_CACHE_KEY is not set/);
    expect(thrownBy(() => createRuntime({ loaded, env: { BROKER_CACHE_KEY: "k1:short" } })).code).toBe("ConfigInvalid");
    // Without sharedCache the variables are not needed.
    expect(() => createRuntime({ loaded: { ...loaded, config: parseConfig(base, "test") }, env: {} })).not.toThrow();
  });

  it("reads sharedCache.caFile at start and names it when missing", () => {
    const loaded = {
      config: parseConfig(withShared({ url: "rediss://localhost:6380", caFile: "missing-ca.pem" }), "test"),
      baseDir: tmpdir(),
      source: "broker.yaml",
    };
    const error = thrownBy(() => createRuntime({ loaded, env: { BROKER_CACHE_KEY: goodKey } }));
    expect(error.message).toMatch(/^broker\.yaml: sharedCache\.caFile: cannot read /);
  });
});

describe("acr-credential broker with sharedCache and a bad key", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "shared-cache-cli-"));
    await writeFile(join(dir, "broker.json"), JSON.stringify(withShared({ url: "redis://127.0.0.1:1" })));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("exits 2 with one line naming the variable and the fix, without a stack and without the key", async () => {
    const badKey = `k1:${randomBytes(16).toString("base64")}`;
    const result = await cli(["broker", "--config", join(dir, "broker.json"), "--port", "0"], {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
        ALIBABA_CLOUD_ACCESS_KEY_ID: "TESTAKCLI",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: "test-secret-cli-not-real",
        BROKER_CACHE_KEY: badKey,
      },
    });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
    expect(result.stderr).toMatch(/BROKER_CACHE_KEY: the key after 'k1:' is not 32 bytes of base64/);
    expect(result.stderr).not.toMatch(/\bat .*\.ts:\d+/);
    expect(result.stderr + result.stdout).not.toContain(badKey.slice(3));
  });
});
