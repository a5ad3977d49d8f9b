import { describe, expect, it } from "vitest";
import { trustPolicySchema } from "../../emulator/ram/policy.ts";
import { trustAllows, type TrustCaller } from "../../emulator/ram/trust.ts";

const A = "1000000000000001";
const B = "2000000000000002";
const trust = (statements: unknown[]) => trustPolicySchema.parse({ Version: "1", Statement: statements });
const user = (account: string, name: string): TrustCaller => ({ kind: "ram", account, identity: `acs:ram::${account}:user/${name}` });
const roleSession = (account: string, role: string): TrustCaller => ({ kind: "ram", account, identity: `acs:ram::${account}:role/${role}` });

describe("role trust policies", () => {
  it("admits the RAM user a policy names, and nobody else", () => {
    const policy = trust([{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: [`acs:ram::${A}:user/broker`] } }]);
    expect(trustAllows(policy, user(A, "broker"))).toBe(true);
    expect(trustAllows(policy, user(A, "other"))).toBe(false);
    expect(trustAllows(policy, user(B, "broker"))).toBe(false);
  });

  it("admits every user and role session of an account named by its root ARN", () => {
    const policy = trust([{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: `acs:ram::${A}:root` } }]);
    expect(trustAllows(policy, user(A, "anyone"))).toBe(true);
    expect(trustAllows(policy, roleSession(A, "hop"))).toBe(true);
    expect(trustAllows(policy, user(B, "anyone"))).toBe(false);
  });

  it("admits sessions of another account's role for role chaining", () => {
    const policy = trust([{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: [`acs:ram::${A}:role/hop`] } }]);
    expect(trustAllows(policy, roleSession(A, "HOP"))).toBe(true);
    expect(trustAllows(policy, roleSession(A, "other"))).toBe(false);
  });

  it("lets a Deny statement override an Allow", () => {
    const policy = trust([
      { Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: `acs:ram::${A}:root` } },
      { Effect: "Deny", Action: "sts:*", Principal: { RAM: `acs:ram::${A}:user/intern` } },
    ]);
    expect(trustAllows(policy, user(A, "broker"))).toBe(true);
    expect(trustAllows(policy, user(A, "intern"))).toBe(false);
  });

  it("ignores statements for other actions", () => {
    const policy = trust([{ Effect: "Allow", Action: "sts:AssumeRoleWithSAML", Principal: { RAM: `acs:ram::${A}:root` } }]);
    expect(trustAllows(policy, user(A, "broker"))).toBe(false);
  });

  it("admits an OIDC federated principal only when the oidc:* conditions hold", () => {
    const provider = `acs:ram::${A}:oidc-provider/ack-rrsa-c1`;
    const policy = trust([
      {
        Effect: "Allow",
        Action: "sts:AssumeRole",
        Principal: { Federated: [provider] },
        Condition: {
          StringEquals: { "oidc:aud": "sts.aliyuncs.com", "oidc:iss": "https://issuer.example/c1" },
          StringLike: { "oidc:sub": "system:serviceaccount:kube-system:*" },
        },
      },
    ]);
    const federated: TrustCaller = { kind: "federated", providerArn: provider };
    const claims = { "oidc:aud": ["sts.aliyuncs.com"], "oidc:iss": "https://issuer.example/c1", "oidc:sub": "system:serviceaccount:kube-system:helper" };
    expect(trustAllows(policy, federated, claims)).toBe(true);
    expect(trustAllows(policy, federated, { ...claims, "oidc:sub": "system:serviceaccount:default:app" })).toBe(false);
    expect(trustAllows(policy, federated, { ...claims, "oidc:aud": ["other"] })).toBe(false);
    expect(trustAllows(policy, federated, { ...claims, "oidc:iss": "https://elsewhere.example" })).toBe(false);
    expect(trustAllows(policy, { kind: "federated", providerArn: `acs:ram::${A}:oidc-provider/other` }, claims)).toBe(false);
    expect(trustAllows(policy, user(A, "broker"), claims)).toBe(false);
  });

  it("admits a cloud service named as Service principal", () => {
    const policy = trust([{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { Service: ["fc.aliyuncs.com"] } }]);
    expect(trustAllows(policy, { kind: "service", service: "fc.aliyuncs.com", account: A })).toBe(true);
    expect(trustAllows(policy, { kind: "service", service: "ecs.aliyuncs.com", account: A })).toBe(false);
    expect(trustAllows(policy, user(A, "broker"))).toBe(false);
  });
});
