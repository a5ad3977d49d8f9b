import { describe, expect, it } from "vitest";
import { chainKey, personalDomains, planCalls } from "../../../functions/broker/identity-chain.ts";

const rrsa = { roleArn: "acs:ram::111:role/own", oidcProviderArn: "acs:ram::111:oidc-provider/p", subject: "system:serviceaccount:kube-system:helper" };
const assumeRole = { roleArn: "acs:ram::222:role/pull", durationSeconds: 3600 };

describe("identity chain planning", () => {
  it("goes straight to CR as the broker when there is no role", () => {
    const p = planCalls({}, { edition: "personal", regionId: "cn-beijing" });
    expect(p.sessions).toEqual([]);
    expect(p.registry).toEqual({ api: "cr:GetAuthorizationToken(personal)", regionId: "cn-beijing" });
    expect(p.discoverDomains).toBe(false);
  });

  it("assumes the cross-account role, then asks the Enterprise instance", () => {
    const p = planCalls({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    expect(p.sessions.map((s) => s.api)).toEqual(["sts:AssumeRole"]);
    expect(p.sessions[0]).toMatchObject(assumeRole);
    expect(p.registry).toEqual({ api: "cr:GetAuthorizationToken", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    expect(p.discoverDomains).toBe(true);
  });

  it("orders RRSA before the cross-account role", () => {
    const p = planCalls({ rrsa, assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou", domains: ["d"] });
    expect(p.sessions.map((s) => s.api)).toEqual(["sts:AssumeRoleWithOIDC", "sts:AssumeRole"]);
    expect(p.discoverDomains).toBe(false);
  });

  it("keys the cache by chain, instance and region — identical for every cluster using them", () => {
    const a = planCalls({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou" });
    const b = planCalls({ assumeRole }, { edition: "enterprise", instanceId: "cri-abc", regionId: "cn-hangzhou", domains: ["x"] });
    expect(a.cacheKey).toBe(b.cacheKey);
  });

  it("keys differ by role duration, instance, region and RRSA subject", () => {
    const target = { edition: "enterprise" as const, instanceId: "cri-abc", regionId: "cn-hangzhou" };
    const keys = new Set([
      planCalls({ assumeRole }, target).cacheKey,
      planCalls({ assumeRole: { ...assumeRole, durationSeconds: 1800 } }, target).cacheKey,
      planCalls({ assumeRole }, { ...target, instanceId: "cri-def" }).cacheKey,
      planCalls({ assumeRole }, { ...target, regionId: "cn-beijing" }).cacheKey,
      planCalls({ rrsa, assumeRole }, target).cacheKey,
      planCalls({ rrsa: { ...rrsa, subject: "system:serviceaccount:other:sa" }, assumeRole }, target).cacheKey,
    ]);
    expect(keys.size).toBe(6);
  });

  it("shares the RRSA session between chains that start with it", () => {
    const one = planCalls({ rrsa }, { edition: "personal", regionId: "cn-beijing" });
    const two = planCalls({ rrsa, assumeRole }, { edition: "personal", regionId: "cn-beijing" });
    expect(two.sessions[0]!.key).toBe(one.sessions[0]!.key);
    expect(chainKey({ rrsa, assumeRole })).toBe(two.sessions[1]!.key);
  });

  it("lists the Personal Edition domains of a region", () => {
    expect(personalDomains("cn-beijing")).toEqual([
      "registry.cn-beijing.aliyuncs.com",
      "registry-vpc.cn-beijing.aliyuncs.com",
      "registry-internal.cn-beijing.aliyuncs.com",
    ]);
  });
});
