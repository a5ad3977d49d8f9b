/** The kubelet provider's pure decisions: patterns, image hosts, grants, the role annotation, cache duration, and their configuration. */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parseConfig, parseConfigText } from "../../../functions/broker/config.ts";
import { cacheDurationSeconds, imageRegistry, kubeletEntries, subjectMatches, type KubeletProvider } from "../../../functions/broker/kubelet-grants.ts";
import { isAcrCredentialError } from "../../../shared/errors.ts";

const pull = "acs:ram::1000000000000001:role/acr-pull";
const teamRole = "acs:ram::1000000000000001:role/team-pull";
const annotation = "acr-credential-broker/role-arn";

const provider: KubeletProvider = {
  grants: [
    {
      serviceAccounts: ["system:serviceaccount:shop:*"],
      registries: [{ instanceId: "cri-a", regionId: "cn-hangzhou", assumeRoleArn: pull }],
      annotationRoles: [teamRole],
    },
    { serviceAccounts: ["system:serviceaccount:ci:builder"], registries: [{ regionId: "cn-beijing" }], annotationRoles: [] },
  ],
};

/** `Forbidden <reason>: <message>` of what `run` threw. */
function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isAcrCredentialError(error)) return `${error.code} ${error.reason}: ${error.message}`;
    throw error;
  }
  throw new Error("expected a refusal");
}

describe("subjectMatches", () => {
  it("lets * stand for any characters within one segment only", () => {
    expect(subjectMatches("system:serviceaccount:shop:*", "system:serviceaccount:shop:web")).toBe(true);
    expect(subjectMatches("system:serviceaccount:team-*:puller", "system:serviceaccount:team-blue:puller")).toBe(true);
    expect(subjectMatches("system:serviceaccount:shop:*", "system:serviceaccount:shopping:web")).toBe(false);
    expect(subjectMatches("system:serviceaccount:*:web", "system:serviceaccount:a:b:web")).toBe(false);
    expect(subjectMatches("system:serviceaccount:shop:web", "system:serviceaccount:shop:web2")).toBe(false);
  });
});

describe("imageRegistry", () => {
  it("reads the registry host as the kubelet does", () => {
    expect(imageRegistry("cri-a-registry.cn-hangzhou.cr.aliyuncs.com/apps/web:1")).toBe("cri-a-registry.cn-hangzhou.cr.aliyuncs.com");
    expect(imageRegistry("127.0.0.1:5000/demo/hello@sha256:abc")).toBe("127.0.0.1:5000");
    expect(imageRegistry("localhost/x")).toBe("localhost");
    expect(imageRegistry("library/nginx")).toBe("docker.io");
    expect(imageRegistry("nginx")).toBe("docker.io");
  });
});

describe("kubeletEntries", () => {
  const facts = (subject: string, annotations: Record<string, string> = {}) => ({ clusterName: "prod", subject, annotations });

  it("gives a matching ServiceAccount its grant's registries with their own roles", () => {
    const [entry] = kubeletEntries(provider, annotation, facts("system:serviceaccount:shop:web"));
    expect(entry).toMatchObject({ instanceId: "cri-a", regionId: "cn-hangzhou", chain: { assumeRole: { roleArn: pull, durationSeconds: 3600 } } });
    expect(kubeletEntries(provider, annotation, facts("system:serviceaccount:ci:builder"))).toEqual([
      { target: { edition: "personal", regionId: "cn-beijing" }, chain: {}, regionId: "cn-beijing" },
    ]);
  });

  it("refuses a ServiceAccount no grant matches, a non-ServiceAccount subject, and a cluster without grants", () => {
    expect(refusal(() => kubeletEntries(provider, annotation, facts("system:serviceaccount:ci:other")))).toMatch(/^Forbidden kubelet-grant-absent: /);
    expect(refusal(() => kubeletEntries(provider, annotation, facts("system:node:n1")))).toMatch(/^Forbidden not-a-service-account: /);
    expect(refusal(() => kubeletEntries(undefined, annotation, facts("system:serviceaccount:shop:web")))).toMatch(/^Forbidden kubelet-provider-absent: /);
  });

  it("pulls with an annotated role only when the matching grant lists it", () => {
    const [entry] = kubeletEntries(provider, annotation, facts("system:serviceaccount:shop:web", { [annotation]: teamRole }));
    expect(entry!.chain.assumeRole!.roleArn).toBe(teamRole);
    // Listed by no grant of this ServiceAccount: refused, never silently ignored.
    expect(refusal(() => kubeletEntries(provider, annotation, facts("system:serviceaccount:shop:web", { [annotation]: "acs:ram::999:role/admin" })))).toMatch(
      /^Forbidden role-not-granted: .*acs:ram::999:role\/admin/,
    );
    expect(refusal(() => kubeletEntries(provider, annotation, facts("system:serviceaccount:ci:builder", { [annotation]: teamRole })))).toMatch(
      /^Forbidden role-not-granted: /,
    );
  });

  it("ignores annotations other than the configured one", () => {
    const [entry] = kubeletEntries(provider, annotation, facts("system:serviceaccount:shop:web", { "other/role-arn": teamRole }));
    expect(entry!.chain.assumeRole!.roleArn).toBe(pull);
  });
});

describe("cacheDurationSeconds", () => {
  it("ends the refresh margin before expiry, in whole seconds, never below zero", () => {
    expect(cacheDurationSeconds(10_000_000 + 3600_000, 10_000_000, 900)).toBe(2700);
    expect(cacheDurationSeconds(10_000_000 + 3599_500, 10_000_000, 900)).toBe(2699);
    expect(cacheDurationSeconds(10_000_000 + 600_000, 10_000_000, 900)).toBe(0);
  });
});

describe("kubeletProvider configuration", () => {
  const cluster = {
    name: "prod",
    issuer: "https://oidc.example.test/prod",
    jwks: { keys: [{ kty: "RSA" }] },
    subjects: ["system:serviceaccount:kube-system:r"],
  };
  const grants = [{ serviceAccounts: ["system:serviceaccount:shop:*"], registries: [{ regionId: "cn-hangzhou" }] }];

  it("takes the example of docs/kubelet-provider.md as it is", async () => {
    const doc = await readFile(new URL("../../../docs/kubelet-provider.md", import.meta.url), "utf8");
    const example = /## The broker's configuration[\s\S]*?```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
    const config = parseConfigText(example, "docs/kubelet-provider.md");
    expect(config.clusters[0]!.kubeletProvider!.grants.map((g) => g.annotationRoles.length)).toEqual([0, 2]);
  });

  it("defaults the audience and the annotation broker-wide", () => {
    const config = parseConfig({ audience: "acr-credential-broker", clusters: [{ ...cluster, kubeletProvider: { grants } }] }, "test");
    expect(config.kubeletProvider).toEqual({ audience: "acr-credential-broker-kubelet", roleAnnotation: annotation });
    expect(config.clusters[0]!.kubeletProvider!.grants[0]!.annotationRoles).toEqual([]);
  });

  it("refuses the broker's own audience for the kubelet, and malformed patterns and roles, naming the field", () => {
    expect(() =>
      parseConfig({ audience: "acr-credential-broker", clusters: [{ ...cluster, kubeletProvider: { audience: "acr-credential-broker", grants } }] }, "test"),
    ).toThrow(/clusters\[0\]\.kubeletProvider\.audience: must differ/);
    expect(() =>
      parseConfig(
        { audience: "acr-credential-broker", clusters: [{ ...cluster, kubeletProvider: { grants: [{ ...grants[0], serviceAccounts: ["shop:*"] }] } }] },
        "test",
      ),
    ).toThrow(/serviceAccounts\[0\]: expected system:serviceaccount:<namespace>:<name>/);
    expect(() =>
      parseConfig(
        { audience: "acr-credential-broker", clusters: [{ ...cluster, kubeletProvider: { grants: [{ ...grants[0], annotationRoles: ["admin"] }] } }] },
        "test",
      ),
    ).toThrow(/annotationRoles\[0\]: expected a RAM role ARN/);
    expect(() =>
      parseConfig(
        {
          audience: "acr-credential-broker",
          refreshBeforeExpirySeconds: 1800,
          clusters: [
            {
              ...cluster,
              kubeletProvider: { grants: [{ ...grants[0], registries: [{ regionId: "cn-hangzhou", assumeRoleArn: pull, expireDuration: 1800 }] }] },
            },
          ],
        },
        "test",
      ),
    ).toThrow(/kubeletProvider\.grants\[0\]\.registries\[0\]\.expireDuration: must be longer than refreshBeforeExpirySeconds/);
  });
});
