import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig, loadConfigFile, parseConfig, parseConfigText, readClusterCas } from "../../../functions/broker/config.ts";
import { thrownBy } from "../../support/errors.ts";

const minimal = {
  audience: "acr-credential-broker",
  clusters: [
    {
      name: "prod-hz-1",
      issuer: "https://oidc.example.test/c1",
      subjects: ["system:serviceaccount:kube-system:helper"],
      registries: [
        { instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 3600 },
        { regionId: "cn-beijing" },
      ],
    },
  ],
};

describe("broker configuration", () => {
  it("fills in the documented defaults", () => {
    const config = parseConfig(minimal, "test");
    expect(config).toMatchObject({
      clockSkewSeconds: 60,
      maxTokenLifetimeSeconds: 86400,
      refreshBeforeExpirySeconds: 900,
      discoveredDomainsTtlSeconds: 21_600,
      alibabaCloud: { stsEndpoint: "sts.aliyuncs.com", crEndpoint: "cr.{regionId}.aliyuncs.com", protocol: "https" },
    });
    expect(config.clusters[0]!.allowRrsa).toBe(false);
  });

  it("accepts a full configuration in the shape docs/broker.md documents", () => {
    const config = parseConfigText(
      `audience: acr-credential-broker
clockSkewSeconds: 60
maxTokenLifetimeSeconds: 86400
refreshBeforeExpirySeconds: 900
clusters:
  - name: prod-hz-1
    issuer: https://oidc-ack-cn-hangzhou.oss-cn-hangzhou.aliyuncs.com/c0123
    subjects: [system:serviceaccount:kube-system:aliyun-acr-credential-helper]
    registries:
      - { instanceId: cri-abc, regionId: cn-hangzhou, assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 3600 }
      - { regionId: cn-beijing }
    allowRrsa: true
`,
      "broker.yaml",
    );
    expect(config.clusters[0]).toMatchObject({ name: "prod-hz-1", allowRrsa: true });
    expect(config.clusters[0]!.registries).toHaveLength(2);
  });

  it("names the source, the field path and what is expected", () => {
    const error = thrownBy(() => parseConfig({ ...minimal, clusters: [{ ...minimal.clusters[0], issuer: "ftp://x" }] }, "/etc/broker.yaml"));
    expect(error.code).toBe("ConfigInvalid");
    expect(error.message).toContain("/etc/broker.yaml");
    expect(error.message).toContain("clusters[0].issuer");
    expect(error.message).toMatch(/expected an https URL/);
  });

  it("refuses a discoveredDomainsTtlSeconds under a minute, naming the field and the bound", () => {
    const error = thrownBy(() => parseConfig({ ...minimal, discoveredDomainsTtlSeconds: 30 }, "broker.yaml"));
    expect(error.code).toBe("ConfigInvalid");
    expect(error.message).toMatch(/^broker\.yaml: discoveredDomainsTtlSeconds: .*60/);
  });

  it("refuses an unknown field instead of ignoring a typo", () => {
    const error = thrownBy(() => parseConfig({ ...minimal, refreshBeforeExpiry: 10 }, "test"));
    expect(error.message).toMatch(/refreshBeforeExpiry/);
  });

  it("refuses a plain http issuer unless it is a loopback address", () => {
    expect(() => parseConfig({ ...minimal, clusters: [{ ...minimal.clusters[0], issuer: "http://oidc.example.test" }] }, "t")).toThrow(/clusters\[0\]\.issuer/);
    expect(() => parseConfig({ ...minimal, clusters: [{ ...minimal.clusters[0], issuer: "http://127.0.0.1:8080/c" }] }, "t")).not.toThrow();
  });

  it("refuses two clusters with the same issuer (tokens are matched to clusters by issuer)", () => {
    const error = thrownBy(() => parseConfig({ ...minimal, clusters: [minimal.clusters[0], { ...minimal.clusters[0], name: "other" }] }, "t"));
    expect(error.message).toMatch(/clusters\[1\]\.issuer.*already used/);
  });

  it("refuses both jwks and jwksUri on one cluster", () => {
    const error = thrownBy(() =>
      parseConfig({ ...minimal, clusters: [{ ...minimal.clusters[0], jwks: { keys: [{ kty: "RSA" }] }, jwksUri: "https://x.test/jwks" }] }, "t"),
    );
    expect(error.message).toMatch(/clusters\[0\]\.jwks: set either jwks or jwksUri/);
  });

  it("refuses a role session not longer than refreshBeforeExpirySeconds (no credential could be handed out)", () => {
    const error = thrownBy(() =>
      parseConfig(
        {
          ...minimal,
          refreshBeforeExpirySeconds: 900,
          clusters: [
            {
              ...minimal.clusters[0],
              registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/r", expireDuration: 900 }],
            },
          ],
        },
        "t",
      ),
    );
    expect(error.message).toMatch(/clusters\[0\]\.registries\[0\]\.expireDuration/);
  });

  it("refuses a malformed role ARN with an example of the right form", () => {
    const error = thrownBy(() =>
      parseConfig(
        {
          ...minimal,
          clusters: [{ ...minimal.clusters[0], registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "role/acr-pull" }] }],
        },
        "t",
      ),
    );
    expect(error.message).toMatch(/assumeRoleArn: expected a RAM role ARN like acs:ram::/);
  });

  it("reports YAML syntax errors on one line", () => {
    const error = thrownBy(() => parseConfigText("clusters: [", "broker.yaml"));
    expect(error.message).toMatch(/^broker\.yaml: not valid YAML or JSON/);
    expect(error.message).not.toContain("\n");
  });

  it("loads inline BROKER_CONFIG (JSON) or BROKER_CONFIG_FILE, and refuses neither or both", async () => {
    expect(loadConfig({ BROKER_CONFIG: JSON.stringify(minimal) }).config.audience).toBe("acr-credential-broker");
    const dir = await mkdtemp(join(tmpdir(), "broker-config-"));
    await writeFile(join(dir, "broker.json"), JSON.stringify(minimal));
    expect(loadConfig({ BROKER_CONFIG_FILE: "broker.json" }, dir).source).toBe(join(dir, "broker.json"));
    expect(thrownBy(() => loadConfig({})).message).toMatch(/set BROKER_CONFIG .* or BROKER_CONFIG_FILE/);
    expect(thrownBy(() => loadConfig({ BROKER_CONFIG: "{}", BROKER_CONFIG_FILE: "x" })).message).toMatch(/both/);
  });

  it("names an unreadable config file with FileUnreadable", () => {
    const error = thrownBy(() => loadConfigFile(join(tmpdir(), "does-not-exist", "broker.yaml")));
    expect(error.code).toBe("FileUnreadable");
    expect(error.message).toContain("does-not-exist");
  });

  it("reads caFile relative to the config file at start, naming the field when it is missing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "broker-ca-"));
    await writeFile(join(dir, "ca.pem"), "PEM");
    const withCa = (caFile: string) => ({ ...minimal, clusters: [{ ...minimal.clusters[0], caFile }] });
    await writeFile(join(dir, "broker.json"), JSON.stringify(withCa("ca.pem")));
    expect(readClusterCas(loadConfigFile(join(dir, "broker.json"))).get("prod-hz-1")).toBe("PEM");
    await writeFile(join(dir, "broker.json"), JSON.stringify(withCa("missing.pem")));
    expect(thrownBy(() => readClusterCas(loadConfigFile(join(dir, "broker.json")))).message).toMatch(/clusters\[0\]\.caFile: cannot read/);
  });
});
