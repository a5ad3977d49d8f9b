import { managedEntries, type ServiceAccountInfo } from "./plan.ts";
import { annotations } from "./secret.ts";

/**
 * The JSON Patch (RFC 6902) that edits one ServiceAccount's `imagePullSecrets`. The list is atomic
 * (no merge key), so a merge patch or an apply would replace it wholesale; instead the patch first
 * `test`s the `resourceVersion` that was read, so it only lands on exactly the version the edit was
 * computed from, and a concurrent edit by anyone else makes it fail (422) rather than be lost.
 * Foreign entries keep their order; the refresher's new entries go after them. The annotation
 * records which entries the refresher added, the only ones it will ever remove.
 */
export type JsonPatchOperation = { op: "test" | "add" | "replace"; path: string; value: unknown } | { op: "remove"; path: string };

export function serviceAccountPatch(sa: ServiceAccountInfo, add: readonly string[], remove: readonly string[]): JsonPatchOperation[] {
  const removeSet = new Set(remove);
  const kept = sa.imagePullSecrets.filter((entry) => entry.name === undefined || !removeSet.has(entry.name));
  const listedNames = new Set(kept.map((entry) => entry.name));
  const appended = add.filter((name) => !listedNames.has(name)).map((name) => ({ name }));
  const entries = [...kept.map((entry) => ({ ...entry })), ...appended];

  const ops: JsonPatchOperation[] = [{ op: "test", path: "/metadata/resourceVersion", value: sa.resourceVersion }];
  if (entries.length > 0) ops.push({ op: "add", path: "/imagePullSecrets", value: entries });
  else if (sa.imagePullSecrets.length > 0) ops.push({ op: "remove", path: "/imagePullSecrets" });

  const finalNames = new Set(entries.map((entry) => entry.name));
  const managed = [...new Set([...managedEntries(sa).filter((name) => !removeSet.has(name)), ...appended.map((entry) => entry.name)])].filter((name) =>
    finalNames.has(name),
  );
  const nextAnnotations: Record<string, string> = { ...sa.annotations };
  delete nextAnnotations[annotations.managedPullSecrets];
  if (managed.length > 0) nextAnnotations[annotations.managedPullSecrets] = managed.join(",");
  const hadAny = Object.keys(sa.annotations).length > 0;
  if (Object.keys(nextAnnotations).length > 0) ops.push({ op: "add", path: "/metadata/annotations", value: nextAnnotations });
  else if (hadAny) ops.push({ op: "remove", path: "/metadata/annotations" });
  return ops;
}
