import { describe, expect, it } from "vitest";
import type { Credential } from "../../shared/broker-api.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { isRefresherSecretName, matchCredentials, registryRequest, secretNameFor } from "../../job/registry.ts";

const credential = (instanceId: string | undefined, regionId: string, domains: string[], password: string): Credential => ({
  ...(instanceId === undefined ? {} : { instanceId }),
  regionId,
  edition: instanceId === undefined ? "personal" : "enterprise",
  domains,
  username: "u",
  password,
  expiresAt: "2030-01-01T00:00:00Z",
});

describe("registry entries", () => {
  it("derive a stable name from instance, region and domains, and a different one when any changes", () => {
    const base = { instanceId: "cri-a", regionId: "cn-hangzhou", domains: ["a.example.com"] };
    const name = secretNameFor(base);
    expect(isRefresherSecretName(name)).toBe(true);
    expect(secretNameFor({ ...base, domains: ["A.example.com "] })).toBe(name);
    expect(secretNameFor({ ...base, instanceId: "cri-b" })).not.toBe(name);
    expect(secretNameFor({ ...base, regionId: "cn-beijing" })).not.toBe(name);
    expect(secretNameFor({ ...base, domains: [] })).not.toBe(name);
    expect(secretNameFor({ regionId: "cn-hangzhou", domains: [] })).not.toBe(secretNameFor({ instanceId: "", regionId: "cn-beijing", domains: [] }));
  });

  it("send RRSA fields to the broker only when RRSA is on", () => {
    const { config } = parseRefresherConfig({
      "broker-url": "https://b.example",
      rrsa: "enable: true",
      "acr-registry-info":
        "- instanceId: cri-a\n  regionId: cn-hangzhou\n  assumeRoleARN: acs:ram::2:role/pull\n  expireDuration: 7200\n  rrsaRoleARN: acs:ram::1:role/r\n  rrsaOIDCProviderRoleARN: acs:ram::1:oidc-provider/p",
    });
    const entry = config.registries[0]!;
    expect(registryRequest(entry, true)).toEqual({
      instanceId: "cri-a",
      regionId: "cn-hangzhou",
      assumeRoleArn: "acs:ram::2:role/pull",
      expireDuration: 7200,
      rrsaRoleArn: "acs:ram::1:role/r",
      rrsaOidcProviderArn: "acs:ram::1:oidc-provider/p",
    });
    expect(registryRequest(entry, false)).not.toHaveProperty("rrsaRoleArn");
  });

  it("pair each entry with its credential or its error, telling same-instance entries apart by domains", () => {
    const { config } = parseRefresherConfig({
      "broker-url": "https://b.example",
      "acr-registry-info":
        "- instanceId: cri-a\n  regionId: cn-hangzhou\n  domains: pub.example.com\n- instanceId: cri-a\n  regionId: cn-hangzhou\n  domains: vpc.example.com\n- regionId: cn-beijing\n- instanceId: cri-z\n  regionId: cn-shanghai",
    });
    const [pub, vpc, personal, failing] = config.registries as [
      (typeof config.registries)[0] & object,
      (typeof config.registries)[0] & object,
      (typeof config.registries)[0] & object,
      (typeof config.registries)[0] & object,
    ];
    const matched = matchCredentials(
      config.registries,
      [
        credential("cri-a", "cn-hangzhou", ["vpc.example.com"], "for-vpc"),
        credential(undefined, "cn-beijing", ["registry.cn-beijing.aliyuncs.com"], "for-personal"),
        credential("cri-a", "cn-hangzhou", ["pub.example.com"], "for-pub"),
      ],
      [{ instanceId: "cri-z", regionId: "cn-shanghai", code: "Forbidden", message: "not allowed" }],
    );
    expect(matched.get(pub.secretName)?.credential?.password).toBe("for-pub");
    expect(matched.get(vpc.secretName)?.credential?.password).toBe("for-vpc");
    expect(matched.get(personal.secretName)?.credential?.password).toBe("for-personal");
    expect(matched.get(failing.secretName)).toEqual({ error: { instanceId: "cri-z", regionId: "cn-shanghai", code: "Forbidden", message: "not allowed" } });
  });
  it("pair an entry that left its region to the broker with the answer in the region the broker filled in", () => {
    const { config } = parseRefresherConfig({
      "broker-url": "https://b.example",
      "acr-registry-info": '- instanceId: cri-a\n- instanceId: cri-a\n  regionId: cn-beijing\n- instanceId: ""',
    });
    const [placed, named, personal] = config.registries as [
      (typeof config.registries)[0] & object,
      (typeof config.registries)[0] & object,
      (typeof config.registries)[0] & object,
    ];
    expect(registryRequest(placed, false)).toEqual({ instanceId: "cri-a" });
    expect(registryRequest(personal, false)).toEqual({});
    const matched = matchCredentials(
      config.registries,
      // Whatever the answer's order, the entry that named its region gets that region's answer first.
      [
        credential("cri-a", "cn-beijing", ["b.example.com"], "beijing"),
        credential("cri-a", "cn-hangzhou", ["a.example.com"], "cluster-region"),
        credential(undefined, "cn-hangzhou", ["registry.cn-hangzhou.aliyuncs.com"], "personal"),
      ],
      [],
    );
    expect(matched.get(placed.secretName)?.credential?.password).toBe("cluster-region");
    expect(matched.get(named.secretName)?.credential?.password).toBe("beijing");
    expect(matched.get(personal.secretName)?.credential?.password).toBe("personal");
  });
});
