import { describe, expect, it } from "vitest";
import { chainKey, personalDomains, plan } from "../../../functions/broker/identity-chain.ts";

const rrsa = { roleArn: "acs:ram::111:role/own", oidcProviderArn: "acs:ram::111:oidc-provider/p", subject: "system:serviceaccount:kube-system:helper" };
const assumeRole = { roleArn: "acs:ram::222:role/pull", durationSeconds: 3600 };

describe("identity chain planning", () => {
  it("goes straight to CR as the broker when there is no role", () => {
    const p = plan({}, { edition: "personal", regionId: "cn-beijing" });
    expect(p.sessions).toEqual([]);
    expect(p.registry).toEqual({ api: "cr:GetAuthorizationToken(personal)", regionId: "cn-beijing" });
    expect(p.discoverDomains).toBe(false);
  });

  it("assumes the cross-account role, then asks the Enterprise instance", () => {
    const p = plan({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    expect(p.sessions.map((s) => s.api)).toEqual(["sts:AssumeRole"]);
    expect(p.sessions[0]).toMatchObject(assumeRole);
    expect(p.registry).toEqual({ api: "cr:GetAuthorizationToken", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    expect(p.discoverDomains).toBe(true);
  });

  it("orders RRSA before the cross-account role", () => {
    const p = plan({ rrsa, assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou", domains: ["d"] });
    expect(p.sessions.map((s) => s.api)).toEqual(["sts:AssumeRoleWithOIDC", "sts:AssumeRole"]);
    expect(p.discoverDomains).toBe(false);
  });

  it("keys the cache by chain, instance and region — identical for every cluster using them", () => {
    const a = plan({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    const b = plan({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou", domains: ["x"] });
    expect(a.cacheKey).toBe(b.cacheKey);
  });

  it("keys differ by role duration, instance, region and RRSA subject", () => {
    const target = { edition: "enterprise" as const, instanceId: "cri-abc", regionId: "cn-hangzhou" };
    const keys = new Set([
      plan({ assumeRole }, target).cacheKey,
      plan({ assumeRole: { ...assumeRole, durationSeconds: 1800 } }, target).cacheKey,
      plan({ assumeRole }, { ...target, instanceId: "cri-def" }).cacheKey,
      plan({ assumeRole }, { ...target, regionId: "cn-beijing" }).cacheKey,
      plan({ rrsa, assumeRole }, target).cacheKey,
      plan({ rrsa: { ...rrsa, subject: "system:serviceaccount:other:sa" }, assumeRole }, target).cacheKey,
    ]);
    expect(keys.size).toBe(6);
  });

  it("shares the RRSA session between chains that start with it", () => {
    const one = plan({ rrsa }, { edition: "personal", regionId: "cn-beijing" });
    const two = plan({ rrsa, assumeRole }, { edition: "personal", regionId: "cn-beijing" });
    expect(two.sessions[0]!.key).toBe(one.sessions[0]!.key);
    expect(chainKey({ rrsa, assumeRole })).toBe(two.sessions[1]!.key);
  });

  it("lists the Personal Edition domains of a region", () => {
    expect(personalDomains("cn-beijing")).toEqual(["registry.cn-beijing.aliyuncs.com", "registry-vpc.cn-beijing.aliyuncs.com", "registry-internal.cn-beijing.aliyuncs.com"]);
  });
});
