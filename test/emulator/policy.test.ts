import { describe, expect, it } from "vitest";
import { conditionHolds, evaluatePermission, matchesWildcard, permissionPolicySchema, type PermissionPolicy } from "../../emulator/ram/policy.ts";

const policy = (statements: unknown[]): PermissionPolicy => permissionPolicySchema.parse({ Version: "1", Statement: statements });
const instance = "acs:cr:cn-hangzhou:1000000000000001:instance/cri-demo";

describe("RAM permission evaluation", () => {
  it("allows an action on a resource an Allow statement names", () => {
    const policies = [policy([{ Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: instance }])];
    expect(evaluatePermission(policies, { action: "cr:GetAuthorizationToken", resource: instance })).toBe("allow");
  });

  it("gives no decision for another action or another resource", () => {
    const policies = [policy([{ Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: instance }])];
    expect(evaluatePermission(policies, { action: "cr:ListInstance", resource: instance })).toBe("none");
    expect(evaluatePermission(policies, { action: "cr:GetAuthorizationToken", resource: instance.replace("cri-demo", "cri-other") })).toBe("none");
  });

  it("matches actions case-insensitively and resources case-sensitively", () => {
    const policies = [policy([{ Effect: "Allow", Action: "CR:getauthorizationtoken", Resource: instance }])];
    expect(evaluatePermission(policies, { action: "cr:GetAuthorizationToken", resource: instance })).toBe("allow");
    expect(evaluatePermission(policies, { action: "cr:GetAuthorizationToken", resource: instance.toUpperCase() })).toBe("none");
  });

  it("expands * and ? in actions and resources", () => {
    const policies = [
      policy([
        {
          Effect: "Allow",
          Action: ["cr:Get*", "cr:Pull?epository"],
          Resource: ["acs:cr:*:1000000000000001:instance/*", "acs:cr:*:*:repository/cri-demo/demo/*"],
        },
      ]),
    ];
    expect(evaluatePermission(policies, { action: "cr:GetInstance", resource: instance })).toBe("allow");
    expect(evaluatePermission(policies, { action: "cr:PullRepository", resource: "acs:cr:cn-hangzhou:1000000000000001:repository/cri-demo/demo/hello" })).toBe(
      "allow",
    );
    expect(
      evaluatePermission(policies, { action: "cr:PullRepository", resource: "acs:cr:cn-hangzhou:1000000000000001:repository/cri-demo/secret/vault" }),
    ).toBe("none");
  });

  it("lets an explicit Deny win over any Allow, in whichever policy it is", () => {
    const policies = [
      policy([{ Effect: "Allow", Action: "cr:*", Resource: "*" }]),
      policy([{ Effect: "Deny", Action: "cr:PullRepository", Resource: "acs:cr:*:*:repository/*/secret/*" }]),
    ];
    expect(evaluatePermission(policies, { action: "cr:PullRepository", resource: "acs:cr:cn-hangzhou:1:repository/cri-demo/secret/vault" })).toBe("deny");
    expect(evaluatePermission(policies, { action: "cr:PullRepository", resource: "acs:cr:cn-hangzhou:1:repository/cri-demo/demo/hello" })).toBe("allow");
  });

  it("applies a statement only when its conditions hold", () => {
    const policies = [policy([{ Effect: "Allow", Action: "sts:AssumeRole", Resource: "*", Condition: { StringEquals: { "acs:SourceIp": "10.0.0.1" } } }])];
    expect(evaluatePermission(policies, { action: "sts:AssumeRole", resource: "x", context: { "acs:sourceip": "10.0.0.1" } })).toBe("allow");
    expect(evaluatePermission(policies, { action: "sts:AssumeRole", resource: "x", context: { "acs:sourceip": "10.0.0.2" } })).toBe("none");
    expect(evaluatePermission(policies, { action: "sts:AssumeRole", resource: "x" })).toBe("none");
  });

  it("treats * as literal-safe: regex characters in a pattern are not special", () => {
    expect(matchesWildcard("acs:ram::1:role/a.b", "acs:ram::1:role/aXb")).toBe(false);
    expect(matchesWildcard("acs:ram::1:role/a.b", "acs:ram::1:role/a.b")).toBe(true);
  });

  it("refuses a statement without Resource when parsing a permission policy", () => {
    expect(permissionPolicySchema.safeParse({ Statement: [{ Effect: "Allow", Action: "cr:*" }] }).success).toBe(false);
  });
});

describe("RAM condition operators", () => {
  const context = { "oidc:sub": "system:serviceaccount:kube-system:helper", "oidc:aud": ["sts.aliyuncs.com", "other"] };

  it("StringEquals needs an exact value; any of several listed values will do", () => {
    expect(conditionHolds({ StringEquals: { "oidc:sub": ["nope", "system:serviceaccount:kube-system:helper"] } }, context)).toBe(true);
    expect(conditionHolds({ StringEquals: { "oidc:sub": "system:serviceaccount:kube-system:Helper" } }, context)).toBe(false);
  });

  it("a multi-valued context key (an audience list) matches if any value does", () => {
    expect(conditionHolds({ StringEquals: { "oidc:aud": "sts.aliyuncs.com" } }, context)).toBe(true);
  });

  it("StringLike matches wildcards; StringNotLike inverts", () => {
    expect(conditionHolds({ StringLike: { "oidc:sub": "system:serviceaccount:kube-system:*" } }, context)).toBe(true);
    expect(conditionHolds({ StringNotLike: { "oidc:sub": "system:serviceaccount:kube-system:*" } }, context)).toBe(false);
  });

  it("keys compare case-insensitively and every key of every operator must hold", () => {
    expect(
      conditionHolds(
        { StringEquals: { "OIDC:Sub": "system:serviceaccount:kube-system:helper", "oidc:aud": "sts.aliyuncs.com" }, StringLike: { "oidc:sub": "*:other" } },
        context,
      ),
    ).toBe(false);
    expect(conditionHolds({ StringEqualsIgnoreCase: { "OIDC:Sub": "SYSTEM:serviceaccount:kube-system:HELPER" } }, context)).toBe(true);
  });

  it("a missing key fails a positive operator and satisfies a negative one", () => {
    expect(conditionHolds({ StringEquals: { "oidc:iss": "x" } }, context)).toBe(false);
    expect(conditionHolds({ StringNotEquals: { "oidc:iss": "x" } }, context)).toBe(true);
  });
});
