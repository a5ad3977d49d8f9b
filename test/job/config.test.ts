import { describe, expect, it } from "vitest";
import { AcrCredentialError } from "../../shared/errors.ts";
import { literalNames, matchesPattern, parseRefresherConfig, selects } from "../../job/config.ts";
import { secretNameFor } from "../../job/registry.ts";

const addonStyle = {
  "service-account": "default,builder",
  "watch-namespace": "team-a, team-b",
  "expiring-threshold": "20m",
  "notify-email": "ops@example.com",
  "acr-registry-info": `
- instanceId: "cri-abc123"
  regionId: "cn-hangzhou"
  domains: "foo-registry.cn-hangzhou.cr.aliyuncs.com,foo-registry-vpc.cn-hangzhou.cr.aliyuncs.com"
  assumeRoleARN: ""
  expireDuration: 3600
  rrsaRoleARN: ""
  rrsaOIDCProviderRoleARN: ""
- instanceId: ""
  regionId: "cn-beijing"
`,
  "broker-url": "https://broker.example.com/",
};

function problemsOf(data: Record<string, string>): string {
  try {
    parseRefresherConfig(data);
  } catch (error) {
    expect(error).toBeInstanceOf(AcrCredentialError);
    expect((error as AcrCredentialError).code).toBe("ConfigInvalid");
    expect((error as AcrCredentialError).exitCode).toBe(2);
    return (error as AcrCredentialError).message;
  }
  throw new Error("expected the configuration to be rejected");
}

describe("parseRefresherConfig", () => {
  it("reads the add-on's kebab-case ConfigMap as it is", () => {
    const { config, warnings } = parseRefresherConfig(addonStyle);
    expect(warnings).toEqual([]);
    expect(config.brokerUrl).toBe("https://broker.example.com");
    expect(config.serviceAccount).toEqual({ kind: "list", patterns: ["default", "builder"] });
    expect(config.watchNamespace).toEqual({ kind: "list", patterns: ["team-a", "team-b"] });
    expect(config.excludeNamespaces).toEqual([]);
    expect(config.expiringThresholdSeconds).toBe(1200);
    expect(config.notifyEmail).toBe("ops@example.com");
    expect(config.rrsa).toBe(false);
    expect(config.registries).toHaveLength(2);
    const [enterprise, personal] = config.registries;
    expect(enterprise).toMatchObject({
      instanceId: "cri-abc123",
      regionId: "cn-hangzhou",
      domains: ["foo-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "foo-registry.cn-hangzhou.cr.aliyuncs.com"],
      expireDuration: 3600,
    });
    expect(enterprise?.assumeRoleArn).toBeUndefined();
    expect(personal).toMatchObject({ regionId: "cn-beijing", domains: [] });
    expect(personal?.instanceId).toBeUndefined();
  });

  it("reads the managed edition's camelCase keys and gives the same result", () => {
    const camel = {
      serviceAccount: addonStyle["service-account"],
      watchNamespace: addonStyle["watch-namespace"],
      expiringThreshold: addonStyle["expiring-threshold"],
      notifyEmail: addonStyle["notify-email"],
      AcrInstanceInfo: addonStyle["acr-registry-info"].replace(/instanceId/g, "instanceID").replace(/regionId/g, "regionID"),
      "broker-url": addonStyle["broker-url"],
    };
    expect(parseRefresherConfig(camel).config).toEqual(parseRefresherConfig(addonStyle).config);
  });

  it("applies the add-on's defaults: namespace default, ServiceAccount default, threshold 15m", () => {
    const { config } = parseRefresherConfig({ "acr-registry-info": "- regionId: cn-shanghai", "broker-url": "https://b.example" });
    expect(config.watchNamespace).toEqual({ kind: "list", patterns: ["default"] });
    expect(config.serviceAccount).toEqual({ kind: "list", patterns: ["default"] });
    expect(config.expiringThresholdSeconds).toBe(900);
  });

  it("treats watch-namespace all as every namespace, system ones included, as the add-on does", () => {
    const { config } = parseRefresherConfig({ ...addonStyle, "watch-namespace": "all", "service-account": "*" });
    expect(config.watchNamespace).toEqual({ kind: "all" });
    expect(config.serviceAccount).toEqual({ kind: "all" });
    expect(config.excludeNamespaces).toEqual([]);
  });

  it("lets exclude-namespace skip namespaces, including with globs", () => {
    const { config } = parseRefresherConfig({ ...addonStyle, "watch-namespace": "all", "exclude-namespace": "kube-*,sandbox" });
    expect(config.excludeNamespaces).toEqual(["kube-*", "sandbox"]);
  });

  it("accepts the rrsa block in its YAML form and as a bare word", () => {
    const withRrsa = (rrsa: string) =>
      parseRefresherConfig({
        ...addonStyle,
        rrsa,
        "acr-registry-info":
          "- instanceId: cri-x1\n  regionId: cn-hangzhou\n  rrsaRoleARN: acs:ram::111:role/pull\n  rrsaOIDCProviderRoleARN: acs:ram::111:oidc-provider/ack-rrsa-c1",
      }).config;
    expect(withRrsa("enable: true\n").rrsa).toBe(true);
    expect(withRrsa('enable: "true"').rrsa).toBe(true);
    expect(withRrsa("true").rrsa).toBe(true);
    expect(withRrsa("enable: false").rrsa).toBe(false);
    expect(withRrsa("enable: true").registries[0]).toMatchObject({
      rrsaRoleArn: "acs:ram::111:role/pull",
      rrsaOidcProviderArn: "acs:ram::111:oidc-provider/ack-rrsa-c1",
    });
  });

  it("drops RRSA fields with a warning when rrsa is not enabled", () => {
    const { config, warnings } = parseRefresherConfig({
      ...addonStyle,
      "acr-registry-info":
        "- instanceId: cri-x1\n  regionId: cn-hangzhou\n  rrsaRoleARN: acs:ram::111:role/pull\n  rrsaOIDCProviderRoleARN: acs:ram::111:oidc-provider/p",
    });
    expect(config.registries[0]?.rrsaRoleArn).toBeUndefined();
    expect(warnings.join("\n")).toMatch(/RRSA fields are ignored/);
  });

  it("accepts domains as a YAML list as well as a comma-separated string", () => {
    const list = parseRefresherConfig({
      ...addonStyle,
      "acr-registry-info": "- instanceId: cri-abc123\n  regionId: cn-hangzhou\n  domains:\n    - B.example.com\n    - a.example.com",
    }).config;
    expect(list.registries[0]?.domains).toEqual(["a.example.com", "b.example.com"]);
  });

  it("warns about unknown keys and about add-on keys it does not use, without failing", () => {
    const { warnings } = parseRefresherConfig({ ...addonStyle, "watch-namespaces": "x", "acr-api-version": "2018-12-01" });
    expect(warnings.some((w) => w.includes("'watch-namespaces'") && w.includes("not a known setting"))).toBe(true);
    expect(warnings.some((w) => w.includes("'acr-api-version'") && w.includes("is ignored: the broker chooses"))).toBe(true);
  });

  it("ignores an access key in a registry item and warns without repeating its value", () => {
    const { warnings } = parseRefresherConfig({
      ...addonStyle,
      "acr-registry-info": "- regionId: cn-hangzhou\n  customAccessKey: TESTAKID0000\n  customAccessKeySecret: not-a-real-secret",
    });
    const text = warnings.join("\n");
    expect(text).toMatch(/customAccessKeySecret/);
    expect(text).not.toMatch(/not-a-real-secret/);
    expect(text).not.toMatch(/TESTAKID0000/);
  });

  it("rejects an invalid namespace name, naming the key", () => {
    const message = problemsOf({ ...addonStyle, "watch-namespace": "Team_A" });
    expect(message).toMatch(/key 'watch-namespace': 'Team_A' is not a namespace name/);
    expect(message.split("\n")).toHaveLength(1);
  });

  it("rejects a threshold that is not a Go duration, naming the camelCase key when that is the one used", () => {
    const { "expiring-threshold": _, ...rest } = addonStyle;
    expect(problemsOf({ ...rest, expiringThreshold: "15 minutes" })).toMatch(/key 'expiringThreshold': '15 minutes' is not a duration/);
  });

  it("rejects a missing broker-url", () => {
    const { "broker-url": _, ...rest } = addonStyle;
    expect(problemsOf(rest)).toMatch(/key 'broker-url': is required/);
  });

  it("rejects both spellings of one setting with different values", () => {
    expect(problemsOf({ ...addonStyle, watchNamespace: "other" })).toMatch(/key 'watch-namespace': is also set as 'watchNamespace'/);
  });

  it("names the item and field of a bad registry entry", () => {
    const message = problemsOf({
      ...addonStyle,
      "acr-registry-info": "- instanceId: cri-a\n  regionId: cn-hangzhou\n- instanceId: cri-b\n  regionId: Hangzhou\n  expireDuration: 60",
    });
    expect(message).toMatch(
      /key 'acr-registry-info\[1\]\.regionId': 'Hangzhou' is not a region id such as cn-hangzhou \(leave it empty for the cluster's region\)/,
    );
    expect(message).toMatch(/key 'acr-registry-info\[1\]\.expireDuration': '60' must be a whole number of seconds from 900 to 43200/);
  });

  it("fills a missing regionId from default-region-id", () => {
    const { config } = parseRefresherConfig({ ...addonStyle, "default-region-id": "cn-shenzhen", "acr-registry-info": "- instanceId: cri-a" });
    expect(config.registries[0]?.regionId).toBe("cn-shenzhen");
  });

  it("rejects YAML that is not indented consistently", () => {
    expect(problemsOf({ ...addonStyle, "acr-registry-info": "- instanceId: cri-a\n regionId: cn-hangzhou\n   domains: x" })).toMatch(
      /key 'acr-registry-info': is not valid YAML/,
    );
  });

  it("rejects the same registry listed twice", () => {
    expect(
      problemsOf({ ...addonStyle, "acr-registry-info": "- instanceId: cri-a\n  regionId: cn-hangzhou\n- instanceId: cri-a\n  regionId: cn-hangzhou" }),
    ).toMatch(/'acr-registry-info\[1\]': repeats cri-a@cn-hangzhou/);
  });

  it("requires both RRSA fields once rrsa is enabled", () => {
    expect(
      problemsOf({
        ...addonStyle,
        rrsa: "enable: true",
        "acr-registry-info": "- instanceId: cri-a\n  regionId: cn-hangzhou\n  rrsaRoleARN: acs:ram::1:role/r",
      }),
    ).toMatch(/rrsaOIDCProviderRoleARN': is required together/);
  });

  it("rejects an rrsa value it cannot read", () => {
    expect(problemsOf({ ...addonStyle, rrsa: "maybe" })).toMatch(/key 'rrsa': expected 'enable: true'/);
  });

  it("names every Secret after a hash of instance, region and domains", () => {
    const { config } = parseRefresherConfig(addonStyle);
    const [enterprise] = config.registries;
    expect(enterprise?.secretName).toMatch(/^acr-credential-[0-9a-f]{32}$/);
    expect(enterprise?.secretName).toBe(
      secretNameFor({
        instanceId: "cri-abc123",
        regionId: "cn-hangzhou",
        domains: ["FOO-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "foo-registry.cn-hangzhou.cr.aliyuncs.com "],
      }),
    );
  });
});

describe("the managed add-on's parameters", () => {
  const parameters = (json: Record<string, unknown>) => JSON.stringify(json);
  const base = { "broker-url": "https://b.example" };

  it("turn RRSA on with enableRRSA: true, keeping the items' RRSA fields for the broker", () => {
    const { config, warnings } = parseRefresherConfig({
      ...base,
      "addon-parameters": parameters({
        AcrInstanceInfo: [
          {
            instanceID: "cri-x1",
            regionID: "cn-hangzhou",
            rrsaRoleARN: "acs:ram::111:role/pull",
            rrsaOIDCProviderRoleARN: "acs:ram::111:oidc-provider/ack-rrsa-c1",
          },
        ],
        enableRRSA: true,
      }),
    });
    expect(warnings).toEqual([]);
    expect(config.rrsa).toBe(true);
    expect(config.registries[0]).toMatchObject({
      instanceId: "cri-x1",
      regionId: "cn-hangzhou",
      rrsaRoleArn: "acs:ram::111:role/pull",
      rrsaOidcProviderArn: "acs:ram::111:oidc-provider/ack-rrsa-c1",
    });
  });

  it("read enableRRSA as a ConfigMap key too, and accept it next to an rrsa block that agrees", () => {
    expect(parseRefresherConfig({ ...addonStyle, enableRRSA: "true" }).config.rrsa).toBe(true);
    expect(parseRefresherConfig({ ...addonStyle, enableRRSA: "true", rrsa: "enable: true" }).config.rrsa).toBe(true);
    expect(problemsOf({ ...addonStyle, enableRRSA: "false", rrsa: "enable: true" })).toMatch(
      /key 'enableRRSA': is also set as 'rrsa' with a different value; keep one/,
    );
    expect(problemsOf({ ...addonStyle, enableRRSA: "maybe" })).toMatch(/key 'enableRRSA': expected true or false/);
  });

  it("refuse a setting given both as a ConfigMap key and in addon-parameters with different values", () => {
    const message = problemsOf({ ...addonStyle, "addon-parameters": parameters({ watchNamespace: "all" }) });
    expect(message).toMatch(/key 'watch-namespace': is also set as 'addon-parameters\.watchNamespace' with a different value; keep one/);
  });

  it("name the parameter and the item field in an error, as pasted", () => {
    const message = problemsOf({
      ...base,
      "addon-parameters": parameters({ AcrInstanceInfo: [{ instanceId: "cri-ok1" }, { instanceId: "registry-1", expireDuration: 60 }] }),
    });
    expect(message).toMatch(/key 'addon-parameters\.AcrInstanceInfo\[1\]\.instanceId': 'registry-1' is not an instance id such as cri-xxxxxxxx/);
    expect(message).toMatch(/key 'addon-parameters\.AcrInstanceInfo\[1\]\.expireDuration': '60' must be a whole number of seconds from 900 to 43200/);
  });

  it("take lists of names where the add-on takes comma lists", () => {
    const { config } = parseRefresherConfig({
      ...base,
      "addon-parameters": parameters({ watchNamespace: ["team-a", "team-b"], serviceAccount: ["default", "builder"] }),
    });
    expect(config.watchNamespace).toEqual({ kind: "list", patterns: ["team-a", "team-b"] });
    expect(config.serviceAccount).toEqual({ kind: "list", patterns: ["default", "builder"] });
  });

  it("warn about a parameter this refresher does not know, naming where it sits", () => {
    const { warnings } = parseRefresherConfig({ ...base, "addon-parameters": parameters({ watchNamespace: "all", clusterDomain: "x" }) });
    expect(warnings).toEqual(["key 'addon-parameters.clusterDomain' is not a known add-on parameter and is ignored (check its spelling)"]);
  });

  it("refuse addon-parameters that are not the parameter object, showing its shape", () => {
    expect(problemsOf({ ...base, "addon-parameters": "[1, 2]" })).toMatch(
      /key 'addon-parameters': is not the add-on's parameter object; paste the add-on's parameter JSON as it is, e\.g\. \{"AcrInstanceInfo":/,
    );
    expect(problemsOf({ ...base, "addon-parameters": "{ not json" })).toMatch(/key 'addon-parameters': is not the add-on's parameter object/);
  });
});

describe("the add-on's spellings", () => {
  it("take all in any case, and Default for default", () => {
    const read = (namespaces: string, accounts: string) =>
      parseRefresherConfig({ ...addonStyle, "watch-namespace": namespaces, "service-account": accounts }).config;
    expect(read("ALL", "Default").watchNamespace).toEqual({ kind: "all" });
    expect(read("All", "Default").serviceAccount).toEqual({ kind: "list", patterns: ["default"] });
    expect(read("*", "*").watchNamespace).toEqual({ kind: "all" });
    expect(read("Default,team-a", "default,Builder").watchNamespace).toEqual({ kind: "list", patterns: ["default", "team-a"] });
    expect(problemsOf({ ...addonStyle, "watch-namespace": "ALL,team-a" })).toMatch(
      /key 'watch-namespace': 'ALL,team-a' mixes 'all' or '\*' with names; use one or the other/,
    );
  });

  it("match keys without regard to case, '-' or '_'", () => {
    const { "watch-namespace": _, ...rest } = addonStyle;
    const { config, warnings } = parseRefresherConfig({ ...rest, WatchNamespace: "team-c" });
    expect(warnings).toEqual([]);
    expect(config.watchNamespace).toEqual({ kind: "list", patterns: ["team-c"] });
  });

  it("split several instance ids in one instanceId into one registry each, sharing the item's other fields", () => {
    const { config, warnings } = parseRefresherConfig({
      ...addonStyle,
      "acr-registry-info": "- instanceId: cri-a1, cri-b2\n  regionId: cn-shanghai\n  assumeRoleARN: acs:ram::2:role/pull",
    });
    expect(config.registries.map((r) => [r.instanceId, r.regionId, r.assumeRoleArn])).toEqual([
      ["cri-a1", "cn-shanghai", "acs:ram::2:role/pull"],
      ["cri-b2", "cn-shanghai", "acs:ram::2:role/pull"],
    ]);
    expect(new Set(config.registries.map((r) => r.secretName)).size).toBe(2);
    expect(warnings).toEqual([]);
  });

  it("warn when several instances share one domains list, since each Secret then carries every domain", () => {
    const { warnings } = parseRefresherConfig({
      ...addonStyle,
      "acr-registry-info": "- instanceId: cri-a1,cri-b2\n  regionId: cn-shanghai\n  domains: a-registry.cn-shanghai.cr.aliyuncs.com",
    });
    expect(warnings).toEqual([
      expect.stringMatching(/^key 'acr-registry-info\[0\]': its 1 domain\(s\) go into the Secret of each of its 2 instances.*give each instance its own item/),
    ]);
  });
});

describe("the add-on's defaults", () => {
  it("leave the region of an item without regionId to the broker, and an absent acr-registry-info means the cluster region's Personal Edition", () => {
    const { config } = parseRefresherConfig({ "broker-url": "https://b.example", "acr-registry-info": "- instanceId: cri-a1" });
    expect(config.registries).toEqual([{ instanceId: "cri-a1", domains: [], secretName: secretNameFor({ instanceId: "cri-a1", domains: [] }) }]);
    const absentForms: Array<Record<string, string>> = [
      {},
      { "acr-registry-info": "" },
      { AcrInstanceInfo: "[]" },
      { "acr-registry-info": '- instanceId: ""' },
    ];
    for (const absent of absentForms) {
      expect(parseRefresherConfig({ "broker-url": "https://b.example", ...absent }).config.registries.map(({ secretName: _, ...r }) => r)).toEqual([
        { domains: [] },
      ]);
    }
  });
});

describe("a registry item with only unknown fields", () => {
  it("is refused as misspelt rather than taken for the Personal Edition default", () => {
    expect(problemsOf({ ...addonStyle, "acr-registry-info": "- instance: cri-a1\n  region: cn-hangzhou" })).toMatch(
      /key 'acr-registry-info\[0\]': has none of the fields instanceId, regionId, domains, .* \(found 'instance', 'region'\); check their spelling/,
    );
  });
});

describe("retired add-on keys", () => {
  it("say what serves their purpose here", () => {
    const { warnings } = parseRefresherConfig({
      ...addonStyle,
      "webhook-configuration": "enable: true",
      "acr-registry": "registry.*.aliyuncs.com",
      tokenMode: "auto",
    });
    expect(warnings).toEqual([
      "key 'webhook-configuration' is ignored: there is no admission webhook; run the refresher with --watch (job/deploy/watch), which gives a new ServiceAccount its pull secret within seconds of its creation (docs/migrate.md)",
      "key 'acr-registry' is ignored: this first-generation list of registry domains is replaced by 'acr-registry-info': one item per registry with instanceId, regionId and domains (docs/migrate.md)",
      "key 'tokenMode' is ignored: the broker holds the cloud identity, so no worker or managed role is used in the cluster; remove it",
    ]);
  });
});

describe("selectors", () => {
  it("matches exact names and * and ? globs, anchored", () => {
    expect(matchesPattern("team-*", "team-a")).toBe(true);
    expect(matchesPattern("team-*", "myteam-a")).toBe(false);
    expect(matchesPattern("ns?", "ns1")).toBe(true);
    expect(matchesPattern("ns?", "ns12")).toBe(false);
    expect(matchesPattern("a.b", "axb")).toBe(false);
    expect(selects({ kind: "all" }, "anything")).toBe(true);
  });

  it("knows when a namespace list can be read name by name", () => {
    expect(literalNames({ kind: "list", patterns: ["a", "b"] })).toEqual(["a", "b"]);
    expect(literalNames({ kind: "list", patterns: ["a", "team-*"] })).toBeUndefined();
    expect(literalNames({ kind: "all" })).toBeUndefined();
  });
});

describe("instance ids", () => {
  it("accepts only Enterprise Edition ids of the form cri-xxxx, as the broker does", () => {
    expect(() =>
      parseRefresherConfig({ "broker-url": "https://b.example", "acr-registry-info": "- instanceId: my-registry\n  regionId: cn-hangzhou" }),
    ).toThrow(/acr-registry-info\[0\]\.instanceId': 'my-registry' is not an instance id/);
  });
});

describe("spread-window", () => {
  const base = { "broker-url": "https://b.example", "acr-registry-info": "- instanceId: cri-abc\n  regionId: cn-hangzhou" };
  it("defaults to 2m, fitting the CronJob's deadlines, and takes a Go duration in either spelling", () => {
    expect(parseRefresherConfig(base).config.spreadWindowSeconds).toBe(120);
    expect(parseRefresherConfig({ ...base, "spread-window": "90s" }).config.spreadWindowSeconds).toBe(90);
    expect(parseRefresherConfig({ ...base, spreadWindow: "0" }).config.spreadWindowSeconds).toBe(0);
  });

  it("rejects what is not a duration, or longer than an hour, naming the key", () => {
    expect(() => parseRefresherConfig({ ...base, "spread-window": "soon" })).toThrow(/key 'spread-window': 'soon' is not a duration/);
    expect(() => parseRefresherConfig({ ...base, "spread-window": "2h" })).toThrow(/key 'spread-window': '2h' is longer than 1h/);
  });
});
