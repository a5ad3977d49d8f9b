/**
 * The add-on's configuration as Alibaba publishes it (ACK, ACS and ACR pages in English and Chinese,
 * Terraform, the managed add-on's parameters), one file per published example under config-corpus/,
 * each citing its page. Every case states what the add-on makes of it — namespaces, ServiceAccounts,
 * registries, RRSA, threshold — or, for an example no YAML parser reads, the error naming key and fix.
 *
 * File forms: `*.configmap.yaml` a whole kubectl object, `*.data.yaml` a published `data:` block,
 * `*.value.yaml` one `acr-registry-info` value, `*.parameters.json` the managed add-on's parameter JSON
 * (after `//` comment lines) pasted under `addon-parameters`.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseRefresherConfig, type Selector } from "../../job/config.ts";
import { registryRequest, type RegistryEntry } from "../../job/registry.ts";
import { AcrCredentialError } from "../../shared/errors.ts";

const corpus = join(import.meta.dirname, "config-corpus");
const brokerUrl = "https://acr-broker.example.com";

function dataOf(file: string): Record<string, string> {
  const text = readFileSync(join(corpus, file), "utf8");
  if (file.endsWith(".configmap.yaml") || file.endsWith(".data.yaml")) return (parseYaml(text) as { data: Record<string, string> }).data;
  if (file.endsWith(".value.yaml")) return { "acr-registry-info": text };
  if (file.endsWith(".parameters.json"))
    return {
      "addon-parameters": text
        .split("\n")
        .filter((line) => !line.startsWith("//"))
        .join("\n"),
    };
  throw new Error(`${file}: unknown corpus form`);
}

type Registry = Omit<RegistryEntry, "secretName">;

interface Loads {
  namespaces: Selector;
  serviceAccounts: Selector;
  registries: Registry[];
  rrsa: boolean;
  thresholdSeconds: number;
  notifyEmail?: string;
  /** Each must match one warning; no other warning is expected. */
  warnings?: RegExp[];
}
interface Fails {
  /** Each must appear in the one-line error. */
  errors: RegExp[];
}

const all: Selector = { kind: "all" };
const only = (...patterns: string[]): Selector => ({ kind: "list", patterns });
const fifteenMinutes = 900;

const expected: Record<string, Loads | Fails> = {
  "ack-same-account-cross-region.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [
      { instanceId: "cri-instanceId", regionId: "cn-beijing", domains: [] },
      { instanceId: "cri-instanceId", regionId: "cn-hangzhou", domains: [] },
    ],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "c*@aliyuncs.com",
  },
  "ack-same-account-kubectl.value.yaml": {
    errors: [/key 'acr-registry-info\[0\]\.instanceId': '<cri-instanceId>' is not an instance id such as cri-xxxxxxxx/],
  },
  "ack-same-account-webhook.data.yaml": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    // No acr-registry-info: the Personal Edition registry of the cluster's region, which the broker fills in.
    registries: [{ domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    warnings: [/key 'webhook-configuration' is ignored: there is no admission webhook; run the refresher with --watch .*within seconds/],
  },
  "cross-account-rrsa.data.yaml": {
    errors: [
      /key 'acr-registry-info\[0\]\.assumeRoleARN': '<ARN of the role created in Account B>' is not a RAM role ARN \(acs:ram::<account>:role\/<name>\)/,
      /key 'acr-registry-info\[0\]\.rrsaRoleARN': '<ARN of the role created in Account A>' is not a RAM role ARN/,
      /key 'acr-registry-info\[0\]\.rrsaOIDCProviderRoleARN': '<The ARN of the OIDC IdP .*' is not a RAM OIDC provider ARN/,
    ],
  },
  "cross-account-rrsa-filled.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [
      {
        instanceId: "cri-xxx",
        regionId: "cn-hangzhou",
        domains: ["xxxxx-registry.cn-hangzhou.cr.aliyuncs.com"],
        assumeRoleArn: "acs:ram::100XXXXXXXX9630:role/XXXX",
        expireDuration: 3600,
        rrsaRoleArn: "acs:ram::128XXXXXXXXXX09011:role/XXXX",
        rrsaOidcProviderArn: "acs:ram::128XXXXXXXXXX09011:oidc-provider/ack-rrsa-c8864XXXXXXXXXXXXXXXXXX99356a636",
      },
    ],
    rrsa: true,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "c*@example.com",
  },
  "cross-account-worker-role.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [
      {
        instanceId: "cri-xxx",
        regionId: "cn-hangzhou",
        domains: ["xxxxx-registry.cn-hangzhou.cr.aliyuncs.com"],
        assumeRoleArn: "acs:ram::100XXXXXXXX9630:role/XXXX",
        expireDuration: 3600,
      },
    ],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "c*@example.com",
  },
  "cross-account-rrsa-managed.parameters.json": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    registries: [
      {
        instanceId: "cri-XXXXX",
        regionId: "cn-hangzhou",
        domains: ["xxxxx-registry.cn-hangzhou.cr.aliyuncs.com"],
        assumeRoleArn: "acs:ram::100XXXXXXXX9630:role/XXXX",
        expireDuration: 3600,
        rrsaRoleArn: "acs:ram::128XXXXXXXXXX09011:role/XXXX",
        rrsaOidcProviderArn: "acs:ram::128XXXXXXXXXX09011:oidc-provider/ack-rrsa-c8864XXXXXXXXXXXXXXXXXX99356a636",
      },
    ],
    rrsa: true,
    thresholdSeconds: fifteenMinutes,
  },
  "cross-account-managed-several-instances.parameters.json": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    registries: [
      { instanceId: "cri-XXXXX", regionId: "cn-hangzhou", domains: [], assumeRoleArn: "acs:ram::100XXXXXXXX9630:role/XXXX", expireDuration: 3600 },
      { instanceId: "cri-YYYYY", regionId: "cn-hangzhou", domains: [], assumeRoleArn: "acs:ram::100XXXXXXXX9630:role/XXXX", expireDuration: 3600 },
    ],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "acs-console-defaults.parameters.json": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    registries: [{ domains: [], expireDuration: 3600 }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "xxx@aliyun.com",
  },
  "ack-zh-managed-table.parameters.json": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    registries: [{ instanceId: "cri-xxx", regionId: "cn-hangzhou", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "terraform-managed.parameters.json": {
    namespaces: only("new-api"),
    serviceAccounts: only("new-api-app"),
    registries: [{ instanceId: "cri-avfqy9xkqi5bj8ee", regionId: "ap-southeast-6", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "ack-api-addon-instance.parameters.json": {
    namespaces: only("new-api"),
    serviceAccounts: only("new-api-app"),
    registries: [{ instanceId: "cri-avfqy9xkqi5bj8ee", regionId: "ap-southeast-6", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "terraform-self-managed.parameters.json": {
    namespaces: all,
    serviceAccounts: all,
    registries: [{ instanceId: "cri-trdfajgsnkbtpthu", regionId: "cn-wulanchabu", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "json-string-values.data.yaml": {
    namespaces: all,
    serviceAccounts: all,
    registries: [{ instanceId: "cri-trdfajgsnkbtpthu", regionId: "cn-wulanchabu", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "registered-enterprise.configmap.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [{ instanceId: "cri-xxx", regionId: "cn-hangzhou", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    warnings: [/key 'acr-api-version' is ignored: the broker chooses the Container Registry API; remove it/],
  },
  "registered-personal.configmap.yaml": {
    errors: [/key 'acr-registry-info': is not valid YAML \(line 2\); it must be a list of '- instanceId: \.\.\.' items, indented consistently/],
  },
  "registered-enterprise-quoted-domains.data.yaml": {
    errors: [/key 'acr-registry-info': is not valid YAML \(line 3\); write several domains as one string, e\.g\. domains: "a\.example\.com,b\.example\.com"/],
  },
  "registered-personal-and-enterprise.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [{ domains: [] }, { instanceId: "cri-xxxx", domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "cs@aliyuncs.com",
  },
  "registered-cross-region-personal.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [
      { regionId: "cn-beijing", domains: [] },
      { regionId: "cn-hangzhou", domains: [] },
    ],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
    notifyEmail: "cs@aliyuncs.com",
  },
  "registered-zh-table-spellings.data.yaml": {
    namespaces: all,
    serviceAccounts: only("default"),
    registries: [{ instanceId: "cri-xxx", regionId: "cn-hangzhou", domains: ["xxx.com", "yyy.com"] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
  "registered-zh-default-instance.data.yaml": {
    namespaces: only("default"),
    serviceAccounts: only("default"),
    registries: [{ domains: [] }],
    rrsa: false,
    thresholdSeconds: fifteenMinutes,
  },
};

const files = readdirSync(corpus).sort();

describe("the published add-on configurations", () => {
  it("each cite their page and have a stated outcome", () => {
    for (const file of files) {
      expect(readFileSync(join(corpus, file), "utf8"), file).toMatch(/^(#|\/\/) Source: https:\/\/\S+/);
      expect(expected, file).toHaveProperty([file]);
    }
    expect(files).toEqual(Object.keys(expected).sort());
  });

  for (const file of files) {
    const outcome = expected[file]!;
    if ("errors" in outcome) {
      it(`${file}: refused with one line naming the key and the fix`, () => {
        let caught: unknown;
        try {
          parseRefresherConfig({ "broker-url": brokerUrl, ...dataOf(file) });
        } catch (error) {
          caught = error;
        }
        expect(caught).toBeInstanceOf(AcrCredentialError);
        const error = caught as AcrCredentialError;
        expect(error.code).toBe("ConfigInvalid");
        expect(error.message.split("\n")).toHaveLength(1);
        for (const pattern of outcome.errors) expect(error.message).toMatch(pattern);
      });
      continue;
    }
    it(`${file}: loads with the add-on's meaning`, () => {
      const { config, warnings } = parseRefresherConfig({ "broker-url": brokerUrl, ...dataOf(file) });
      expect(config.watchNamespace).toEqual(outcome.namespaces);
      // `all` means all, system namespaces included, unless exclude-namespace says otherwise.
      expect(config.excludeNamespaces).toEqual([]);
      expect(config.serviceAccount).toEqual(outcome.serviceAccounts);
      expect(config.registries.map(({ secretName: _, ...registry }) => registry)).toEqual(outcome.registries);
      expect(config.rrsa).toBe(outcome.rrsa);
      expect(config.expiringThresholdSeconds).toBe(outcome.thresholdSeconds);
      expect(config.notifyEmail).toBe(outcome.notifyEmail);
      expect(warnings).toHaveLength(outcome.warnings?.length ?? 0);
      for (const pattern of outcome.warnings ?? [])
        expect(
          warnings.some((warning) => pattern.test(warning)),
          `${pattern} in ${warnings.join(" | ")}`,
        ).toBe(true);
      // What the broker is asked: RRSA fields exactly when RRSA is on, and no region where the item named none.
      for (const [index, entry] of config.registries.entries()) {
        const request = registryRequest(entry, config.rrsa);
        expect(request.rrsaRoleArn).toBe(config.rrsa ? outcome.registries[index]!.rrsaRoleArn : undefined);
        expect(request.regionId).toBe(outcome.registries[index]!.regionId);
      }
    });
  }
});
