import { describe, expect, it } from "vitest";
import type { ServiceAccountInfo } from "../../job/plan.ts";
import { annotations } from "../../job/secret.ts";
import { serviceAccountPatch, type JsonPatchOperation } from "../../job/service-account-patch.ts";

/** A minimal RFC 6902 evaluator for the operations the refresher emits, as the API server applies them. */
function applyPatch(document: Record<string, unknown>, ops: JsonPatchOperation[]): Record<string, unknown> {
  const result = structuredClone(document);
  for (const op of ops) {
    const path = op.path
      .split("/")
      .slice(1)
      .map((part) => part.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = path.pop() as string;
    let parent = result as Record<string, unknown>;
    for (const part of path) parent = parent[part] as Record<string, unknown>;
    if (op.op === "test") {
      if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) throw new Error("test failed (the API server answers 422)");
    } else if (op.op === "remove") {
      if (!(last in parent)) throw new Error(`remove of a missing ${op.path}`);
      delete parent[last];
    } else {
      parent[last] = structuredClone(op.value);
    }
  }
  return result;
}

function objectOf(sa: ServiceAccountInfo): Record<string, unknown> {
  const object: Record<string, unknown> = {
    metadata: {
      name: sa.name,
      namespace: sa.namespace,
      resourceVersion: sa.resourceVersion,
      ...(Object.keys(sa.annotations).length > 0 ? { annotations: sa.annotations } : {}),
    },
  };
  if (sa.imagePullSecrets.length > 0) object.imagePullSecrets = sa.imagePullSecrets;
  return object;
}

const account = (pullSecrets: string[], managed?: string, other: Record<string, string> = {}): ServiceAccountInfo => ({
  namespace: "team-a",
  name: "default",
  resourceVersion: "42",
  imagePullSecrets: pullSecrets.map((name) => ({ name })),
  annotations: { ...other, ...(managed === undefined ? {} : { [annotations.managedPullSecrets]: managed }) },
});

describe("serviceAccountPatch", () => {
  it("guards the edit with a test of the resourceVersion it was computed from", () => {
    const ops = serviceAccountPatch(account([]), ["acr-credential-a"], []);
    expect(ops[0]).toEqual({ op: "test", path: "/metadata/resourceVersion", value: "42" });
    const moved = { ...objectOf(account([])), metadata: { name: "default", resourceVersion: "43" } };
    expect(() => applyPatch(moved, ops)).toThrow(/test failed/);
  });

  it("creates the list on a ServiceAccount that has none and records the entry as the refresher's", () => {
    const after = applyPatch(objectOf(account([])), serviceAccountPatch(account([]), ["acr-credential-a"], []));
    expect(after.imagePullSecrets).toEqual([{ name: "acr-credential-a" }]);
    expect((after.metadata as { annotations: Record<string, string> }).annotations[annotations.managedPullSecrets]).toBe("acr-credential-a");
  });

  it("appends after foreign entries, keeps their order and keeps other annotations", () => {
    const sa = account(["corp-b", "corp-a"], undefined, { team: "payments" });
    const after = applyPatch(objectOf(sa), serviceAccountPatch(sa, ["acr-credential-a", "acr-credential-b"], []));
    expect(after.imagePullSecrets).toEqual([{ name: "corp-b" }, { name: "corp-a" }, { name: "acr-credential-a" }, { name: "acr-credential-b" }]);
    expect((after.metadata as { annotations: Record<string, string> }).annotations.team).toBe("payments");
  });

  it("removes only the named entry and drops the annotation once nothing of the refresher's is left", () => {
    const sa = account(["corp", "acr-credential-old"], "acr-credential-old");
    const after = applyPatch(objectOf(sa), serviceAccountPatch(sa, [], ["acr-credential-old"]));
    expect(after.imagePullSecrets).toEqual([{ name: "corp" }]);
    expect((after.metadata as { annotations?: Record<string, string> }).annotations).toBeUndefined();
  });

  it("removes the field entirely when the last entry goes", () => {
    const sa = account(["acr-credential-old"], "acr-credential-old");
    const after = applyPatch(objectOf(sa), serviceAccountPatch(sa, [], ["acr-credential-old"]));
    expect(after).not.toHaveProperty("imagePullSecrets");
  });

  it("never lists an entry twice", () => {
    const sa = account(["acr-credential-a"], "acr-credential-a");
    const after = applyPatch(objectOf(sa), serviceAccountPatch(sa, ["acr-credential-a", "acr-credential-b"], []));
    expect(after.imagePullSecrets).toEqual([{ name: "acr-credential-a" }, { name: "acr-credential-b" }]);
  });
});
