/**
 * Randomly broken configurations, for the broker and for the refresher: a valid base with one key
 * set to a value of the wrong type, range or shape (and random valid choices elsewhere). Each must
 * be refused as ConfigInvalid with one line that names the key. The CLI turns that into exit 2
 * before it serves or writes anything (the refresher's "nothing written" against a real apiserver
 * is in test/job/refresher.kube.test.ts).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseConfig } from "../../functions/broker/config.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { AcrCredentialError } from "../../shared/errors.ts";
import { cli } from "../cli/commands/support.ts";

const seed = 772024;
const numRuns = 500;

const validBroker = (variant: { skew: number; withRole: boolean; personal: boolean }) => ({
  audience: "acr-credential-broker",
  clockSkewSeconds: variant.skew,
  alibabaCloud: { stsEndpoint: "sts.aliyuncs.com", protocol: "https" },
  clusters: [
    {
      name: "prod",
      issuer: "https://oidc.prod.example.test/c1",
      jwks: { keys: [{ kty: "RSA", kid: "k", n: "AQAB", e: "AQAB" }] },
      subjects: ["system:serviceaccount:kube-system:aliyun-acr-credential-helper"],
      registries: [
        { instanceId: "cri-abc", regionId: "cn-hangzhou", ...(variant.withRole ? { assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 3600 } : {}) },
        ...(variant.personal ? [{ regionId: "cn-beijing" }] : []),
      ],
    },
  ],
});

/** [path, a bad value, what the message must name]. */
const brokerBreakages: Array<[Array<string | number>, unknown, string]> = [
  [["audience"], 5, "audience"],
  [["audience"], "", "audience"],
  [["clockSkewSeconds"], "60", "clockSkewSeconds"],
  [["clockSkewSeconds"], -1, "clockSkewSeconds"],
  [["maxTokenLifetimeSeconds"], "a day", "maxTokenLifetimeSeconds"],
  [["refreshBeforeExpirySeconds"], 5000, "refreshBeforeExpirySeconds"],
  [["requestTimeoutSeconds"], 0, "requestTimeoutSeconds"],
  [["requestTimeoutSeconds"], 1000, "requestTimeoutSeconds"],
  [["forceIntervalSeconds"], 1.5, "forceIntervalSeconds"],
  [["cacheMaxEntries"], "many", "cacheMaxEntries"],
  [["alibabaCloud", "protocol"], "ftp", "alibabaCloud.protocol"],
  [["alibabaCloud", "stsEndpoint"], "", "alibabaCloud.stsEndpoint"],
  [["clusters"], [], "clusters"],
  [["clusters"], "prod", "clusters"],
  [["clusters", 0, "name"], "Prod Cluster!", "clusters[0].name"],
  [["clusters", 0, "issuer"], "http://oidc.example.test", "clusters[0].issuer"],
  [["clusters", 0, "issuer"], "not a url", "clusters[0].issuer"],
  [["clusters", 0, "subjects"], [], "clusters[0].subjects"],
  [["clusters", 0, "jwks"], { keys: [] }, "clusters[0].jwks"],
  [["clusters", 0, "jwksUri"], "https://oidc.example.test/keys", "clusters[0].jwks"],
  [["clusters", 0, "allowRrsa"], "yes", "clusters[0].allowRrsa"],
  [["clusters", 0, "registries", 0, "regionId"], "CN_HANGZHOU", "clusters[0].registries[0].regionId"],
  [["clusters", 0, "registries", 0, "instanceId"], "abc", "clusters[0].registries[0].instanceId"],
  [["clusters", 0, "registries", 0, "assumeRoleArn"], "arn:aws:iam::1:role/x", "clusters[0].registries[0].assumeRoleArn"],
  [["clusters", 0, "registries", 0, "expireDuration"], 60, "clusters[0].registries[0].expireDuration"],
  [["clusters", 0, "registries", 0, "domains"], ["not a domain!"], "clusters[0].registries[0].domains"],
  [["clusters", 0, "registries", 0, "password"], "hunter2-not-real", "password"],
  [["clusters", 0, "secretKey"], "x", "secretKey"],
];

function setPath(target: unknown, path: Array<string | number>, value: unknown): void {
  let node = target as Record<string | number, unknown>;
  for (const key of path.slice(0, -1)) node = node[key] as Record<string | number, unknown>;
  node[path.at(-1)!] = value;
}

const validRefresher = (variant: { camel: boolean; all: boolean; threshold: string }) => ({
  [variant.camel ? "brokerUrl" : "broker-url"]: "https://acr-broker.example.test",
  [variant.camel ? "watchNamespace" : "watch-namespace"]: variant.all ? "all" : "team-*,default",
  [variant.camel ? "expiringThreshold" : "expiring-threshold"]: variant.threshold,
  [variant.camel ? "AcrInstanceInfo" : "acr-registry-info"]:
    '- instanceId: "cri-abc"\n  regionId: "cn-hangzhou"\n  expireDuration: 3600\n  assumeRoleARN: "acs:ram::222:role/acr-pull"\n',
});

/** [kebab key, camel key, a bad value]. */
const refresherBreakages: Array<[string, string, string]> = [
  ["broker-url", "brokerUrl", "ftp://acr-broker.example.test"],
  ["broker-url", "brokerUrl", "not a url"],
  ["watch-namespace", "watchNamespace", "Not_A_Namespace"],
  ["watch-namespace", "watchNamespace", "team/*"],
  ["service-account", "serviceAccount", "Bad Name!"],
  ["expiring-threshold", "expiringThreshold", "15"],
  ["expiring-threshold", "expiringThreshold", "forever"],
  ["expiring-threshold", "expiringThreshold", "-5m"],
  ["acr-registry-info", "AcrInstanceInfo", "- regionId: ["],
  ["acr-registry-info", "AcrInstanceInfo", "not: a list"],
  ["acr-registry-info", "AcrInstanceInfo", '- instanceId: "cri-abc"\n  regionId: "cn-hangzhou"\n  expireDuration: 60\n'],
  ["acr-registry-info", "AcrInstanceInfo", '- instanceId: "abc"\n  regionId: "cn-hangzhou"\n'],
  ["acr-registry-info", "AcrInstanceInfo", '- instance: "cri-abc"\n'],
  ["rrsa", "rrsa", "enable: maybe"],
];

/** The error a parse throws, or undefined when it accepted the input. */
function refusal(parse: () => unknown): AcrCredentialError | undefined {
  try {
    parse();
    return undefined;
  } catch (error) {
    if (error instanceof AcrCredentialError) return error;
    throw error;
  }
}

describe("randomized broken broker configurations", () => {
  it("accepts the unbroken bases (so each refusal is the breakage's doing)", () => {
    for (const skew of [0, 60])
      for (const withRole of [true, false])
        for (const personal of [true, false]) expect(() => parseConfig(validBroker({ skew, withRole, personal }), "broker.yaml")).not.toThrow();
  });

  it(`refuses each with one line naming the key (seed ${seed}, ${numRuns} cases)`, () => {
    fc.assert(
      fc.property(
        fc.record({ skew: fc.integer({ min: 0, max: 600 }), withRole: fc.boolean(), personal: fc.boolean() }),
        fc.constantFrom(...brokerBreakages),
        (variant, [path, value, named]) => {
          const config = validBroker(variant);
          setPath(config, path, value);
          const error = refusal(() => parseConfig(config, "broker.yaml"));
          expect(error?.code).toBe("ConfigInvalid");
          expect(error!.message).not.toContain("\n");
          expect(error!.message).toMatch(/^broker\.yaml: /);
          expect(error!.message).toContain(named);
          // A value given for a secret-looking key is not repeated back.
          expect(error!.message).not.toContain("hunter2");
        },
      ),
      { seed, numRuns },
    );
  });
});

describe("randomized broken acr-configuration ConfigMaps", () => {
  it(`refuses each with one line naming the key (seed ${seed}, ${numRuns} cases)`, () => {
    fc.assert(
      fc.property(
        fc.record({ camel: fc.boolean(), all: fc.boolean(), threshold: fc.constantFrom("15m", "1h", "90s") }),
        fc.constantFrom(...refresherBreakages),
        (variant, [kebab, camel, value]) => {
          const data: Record<string, string> = validRefresher(variant);
          expect(() => parseRefresherConfig(data)).not.toThrow();
          const key = variant.camel ? camel : kebab;
          for (const spelling of [kebab, camel]) delete data[spelling];
          data[key] = value;
          const error = refusal(() => parseRefresherConfig(data));
          expect(error?.code).toBe("ConfigInvalid");
          expect(error!.exitCode).toBe(2);
          expect(error!.message).not.toContain("\n");
          expect(error!.message).toContain(`key '${key}`);
        },
      ),
      { seed, numRuns },
    );
  });
});

describe("acr-credential broker with a broken configuration file", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bad-broker-config-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it.each<[string, string, string]>([
    [
      "an issuer over plain http",
      JSON.stringify({
        ...validBroker({ skew: 60, withRole: true, personal: false }),
        clusters: [{ ...validBroker({ skew: 60, withRole: true, personal: false }).clusters[0], issuer: "http://oidc.example.test" }],
      }),
      "clusters[0].issuer",
    ],
    ["an unknown top-level key", "audience: acr-credential-broker\nclusters: []\nlisten: 0.0.0.0\n", "listen"],
    ["YAML that does not parse", "audience: [unclosed\n", "not valid YAML"],
  ])("exits 2 with one line naming the problem (%s), before listening", async (_name, text, named) => {
    const file = join(dir, `broker-${named.replace(/\W/g, "")}.yaml`);
    await writeFile(file, text);
    const result = await cli(["broker", "--config", file, "--port", "0"], {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
        ALIBABA_CLOUD_ACCESS_KEY_ID: "TESTAKBADCONFIG01",
        ALIBABA_CLOUD_ACCESS_KEY_SECRET: "test-secret-bad-config-not-real",
      },
    });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe("");
    expect(result.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(result.stderr).toContain(named);
    expect(result.stderr).toMatch(/\[ConfigInvalid\]$/m);
    expect(result.stderr).not.toContain("listening");
    expect(result.stderr).not.toContain("test-secret-bad-config-not-real");
  });
});
