/** The doctor's pure parts: what the shipped RBAC requires, what a review's rules cover, what a refusal blames. */
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { checklistExitCode, fail, formatChecklist, ok, skip } from "../../../cli/doctor/checklist.ts";
import { allowed, missingPermissions, requiredPermissions, type ResourceRule } from "../../../cli/doctor/rbac.ts";
import { assessIssuer, readClaims, refusalBlames } from "../../../cli/doctor/token.ts";

const shipped = () => readFile(new URL("../../../job/deploy/base/rbac.yaml", import.meta.url), "utf8");

describe("requiredPermissions of job/deploy/base/rbac.yaml", () => {
  it("needs the status ConfigMap's patch by name in kube-system, and no read of any Secret", async () => {
    const required = requiredPermissions(await shipped());
    expect(required).toContainEqual({ namespace: "kube-system", apiGroup: "", resource: "configmaps", resourceName: "acr-credential-status", verb: "patch" });
    expect(required).toContainEqual({ namespace: undefined, apiGroup: "", resource: "secrets", verb: "create" });
    expect(required.filter((permission) => permission.resource === "secrets" && ["get", "list", "watch"].includes(permission.verb))).toEqual([]);
  });

  it("is fully covered by a review that echoes the manifest's own rules", async () => {
    const text = await shipped();
    const rules = parseAllDocuments(text).flatMap((document) => (document.toJS() as { rules?: ResourceRule[] } | null)?.rules ?? []);
    expect(missingPermissions(requiredPermissions(text), new Map([["kube-system", rules]]))).toEqual([]);
  });
});

describe("allowed", () => {
  const permission = { namespace: "kube-system", apiGroup: "", resource: "configmaps", resourceName: "acr-credential-status", verb: "patch" };
  it("takes wildcards", () => {
    expect(allowed(permission, [{ apiGroups: ["*"], resources: ["*"], verbs: ["*"] }])).toBe(true);
  });
  it("does not let a rule limited to other names cover a name", () => {
    expect(allowed(permission, [{ apiGroups: [""], resources: ["configmaps"], resourceNames: ["acr-configuration"], verbs: ["patch"] }])).toBe(false);
  });
  it("does not let a named rule cover a permission on every name", () => {
    expect(
      allowed({ ...permission, resourceName: undefined, verb: "create" }, [
        { apiGroups: [""], resources: ["configmaps"], resourceNames: ["acr-credential-status"], verbs: ["create"] },
      ]),
    ).toBe(false);
  });
});

describe("missingPermissions", () => {
  it("checks a Role's rules only in its namespace and a ClusterRole's in every reviewed one", () => {
    const required = requiredPermissions(`
kind: ClusterRole
rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["create"] }]
---
kind: Role
metadata: { namespace: kube-system }
rules: [{ apiGroups: [""], resources: ["configmaps"], verbs: ["create"] }]
`);
    const reviews = new Map<string, ResourceRule[]>([
      ["kube-system", [{ apiGroups: [""], resources: ["secrets"], verbs: ["create"] }]],
      ["team-a", []],
    ]);
    expect(missingPermissions(required, reviews)).toEqual(["create configmaps in kube-system", "create secrets in team-a"]);
  });
});

describe("refusalBlames", () => {
  it.each([
    ["InvalidToken", "broker https://b/v1/credentials answered 401: the token's audience (aud) is not this broker's; check …", "audience"],
    ["InvalidToken", "answered 401: the token's issuer (iss) is not a configured cluster; …", "issuer"],
    ["InvalidToken", "answered 401: the token has expired; …", "expired"],
    ["Forbidden", "answered 403: subject 'system:serviceaccount:a:b' may not request credentials for cluster 'c'", "subject"],
    ["Forbidden", "answered 403: registry cri-x@cn-hangzhou is not allowed for cluster 'c'", undefined],
  ])("%s %s → %s", (code, message, blamed) => {
    expect(refusalBlames(code, message)).toBe(blamed);
  });
});

describe("readClaims", () => {
  it("reads the claims of a JWT without its signature and refuses what is not one", () => {
    const payload = Buffer.from(JSON.stringify({ iss: "https://issuer", aud: "acr-credential-broker", sub: "system:serviceaccount:a:b", exp: 2 })).toString(
      "base64url",
    );
    expect(readClaims(`eyJhbGciOiJSUzI1NiJ9.${payload}.c2ln`)).toEqual({
      iss: "https://issuer",
      aud: ["acr-credential-broker"],
      sub: "system:serviceaccount:a:b",
      exp: 2,
    });
    expect(readClaims("not a token")).toBeUndefined();
  });
});

describe("the checklist", () => {
  it("marks each check, gives the fix under a failure and exits 1 unless all passed", () => {
    const checks = [ok("a", "first", "fine"), fail("b", "second", "broken", "mend it"), skip("c", "third", "an earlier check failed")];
    expect(formatChecklist(checks).split("\n")).toEqual([
      "✓ first   fine",
      "✗ second  broken",
      "          fix: mend it",
      "- third   skipped: an earlier check failed",
      "",
      "2 of 3 checks did not pass.",
    ]);
    expect(checklistExitCode(checks)).toBe(1);
    expect(checklistExitCode([checks[0]!])).toBe(0);
  });
});

describe("assessIssuer", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const claims = {
    iss: "https://oidc.example.com/clusters/a",
    aud: ["acr-credential-broker"],
    sub: "system:serviceaccount:kube-system:x",
    exp: now / 1000 + 600,
  };

  it("passes a fresh token of this cluster's issuer, a trailing slash aside", () => {
    expect(assessIssuer(claims, "https://oidc.example.com/clusters/a/", "the file", now)).toMatchObject({
      status: "ok",
      detail: "https://oidc.example.com/clusters/a (this cluster's), sub system:serviceaccount:kube-system:x, expires in 10 min",
    });
  });

  it("fails a token of another issuer, an expired one and one that is not a JWT", () => {
    expect(assessIssuer(claims, "https://oidc.example.com/clusters/b", "the file", now)).toMatchObject({
      status: "fail",
      detail: "the token's issuer https://oidc.example.com/clusters/a is not this cluster's (https://oidc.example.com/clusters/b)",
    });
    expect(assessIssuer({ ...claims, exp: now / 1000 - 1 }, undefined, "the file", now)).toMatchObject({
      status: "fail",
      detail: "the token from the file expired at 2029-12-31T23:59:59.000Z",
    });
    expect(assessIssuer(undefined, undefined, "the file", now)).toMatchObject({ status: "fail", detail: "the token from the file is not a JWT" });
  });
});
