/**
 * An in-memory Kubernetes API behind the refresher's `ClusterApi`, for testing `apply` where the
 * kube-apiserver binaries are not built, and for faults a real API server cannot produce on demand
 * (a 5xx, a request that never answers, a race lost at an exact moment).
 *
 * It behaves like the API server only where `apply` depends on it (docs/decisions/001, 003, 005):
 * - Secrets by server-side apply without force: created with a fresh uid; a field another manager
 *   set to another value is a 409 FieldManagerConflict; `type` is immutable (422 on `type`); a
 *   `metadata.uid` in the applied object is a precondition: another uid is a 422 on `metadata.uid`,
 *   no Secret at all a 409 "no existing object was found".
 * - Secret deletes with `preconditions.uid`: another uid is a 409, no Secret a 404 (`not-found`).
 * - ServiceAccounts by JSON Patch (RFC 6902): a failed `test` op is a 422, every write bumps
 *   `resourceVersion`.
 * - Events: creating an existing name is a 409 (`exists`); ConfigMaps by forced apply.
 * Failures are thrown as the client library throws them (`ApiException` with a `Status` body) and
 * passed through `kubernetesError`, so `apply` sees exactly the error shape of the real client.
 */
import { ApiException } from "@kubernetes/client-node";
import { sleep } from "../../shared/retry.ts";
import { kubernetesError, type ClusterApi, type RefresherEvent } from "../../job/cluster.ts";
import type { NamespaceInfo, ServiceAccountInfo } from "../../job/plan.ts";
import type { PullSecretEvent } from "../../job/pull-secret-events.ts";
import { fieldManager, type SecretManifest } from "../../job/secret.ts";
import type { JsonPatchOperation } from "../../job/service-account-patch.ts";

export type Operation = keyof ClusterApi;

/**
 * What the next matching call does instead of its work: fail with an HTTP status, `hang` until the
 * request deadline aborts it (as the real client's per-request deadline does), or time out at once.
 */
export type Fault = { status: number; reason?: string; message?: string } | "hang" | "timeout";

export interface StoredSecret {
  namespace: string;
  name: string;
  uid: string;
  resourceVersion: string;
  type: string;
  data: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Field path (`data..dockerconfigjson`, `type`, `metadata.labels.x`) → the manager that set it. */
  owners: Record<string, string>;
}

export interface StoredServiceAccount {
  namespace: string;
  name: string;
  uid: string;
  resourceVersion: string;
  imagePullSecrets: Array<{ name?: string }>;
  annotations: Record<string, string>;
  imagePullSecretsAppliers?: string[];
}

export interface StoredEvent extends RefresherEvent {
  at: Date;
  series?: { count: number; lastObservedTime: Date };
}

interface PendingFault {
  operation: Operation;
  namespace?: string;
  fault: Fault;
  remaining: number;
}

export interface FakeClusterOptions {
  /** How long a `hang` waits before the request deadline aborts it. */
  requestTimeoutMs?: number;
  /** Every call waits this long before answering, so concurrent calls overlap. */
  latencyMs?: number;
}

export interface FakeCluster extends ClusterApi {
  addNamespace(name: string, extra?: Partial<Omit<NamespaceInfo, "name">>): NamespaceInfo;
  addServiceAccount(
    namespace: string,
    name: string,
    extra?: Partial<Pick<StoredServiceAccount, "imagePullSecrets" | "annotations" | "imagePullSecretsAppliers">>,
  ): StoredServiceAccount;
  /** Another client's write (kubectl create, an Update-operation manager): it owns every field it set. */
  createForeignSecret(namespace: string, name: string, options?: { type?: string; data?: Record<string, string>; manager?: string }): StoredSecret;
  /** The kubelet reports a pull Secret it could not find. */
  addPullSecretEvent(event: PullSecretEvent): void;
  /** Another client deletes a Secret (`kubectl delete secret`). */
  removeSecret(namespace: string, name: string): void;
  /** Another client edits a ServiceAccount (an update: new resourceVersion). */
  editServiceAccount(namespace: string, name: string, edit: (sa: StoredServiceAccount) => void): void;
  secret(namespace: string, name: string): StoredSecret | undefined;
  serviceAccount(namespace: string, name: string): StoredServiceAccount | undefined;
  events(): StoredEvent[];
  configMap(
    namespace: string,
    name: string,
  ): { data: Record<string, string>; labels: Record<string, string>; annotations: Record<string, string>; uid: string } | undefined;
  /** The next `times` calls of `operation` (in `namespace`, if given) fail with `fault`. */
  failNext(operation: Operation, fault: Fault, options?: { namespace?: string; times?: number }): void;
  /** Every call made, in order, by operation and namespace. */
  calls: Array<{ operation: Operation; namespace?: string; name?: string }>;
  /** The most calls in flight at the same time. */
  maxInFlight(): number;
}

/** A failed request as `@kubernetes/client-node` throws it: the raw `Status` JSON as the body. */
function apiError(
  status: number,
  reason: string,
  message: string,
  causes: Array<{ reason: string; field: string; message: string }> = [],
): ApiException<string> {
  const body = {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    ...(causes.length > 0 ? { details: { causes } } : {}),
    code: status,
  };
  return new ApiException(status, "Unknown API Status Code!", JSON.stringify(body), {});
}

/** What the client's per-request deadline (`AbortSignal.timeout` in node-fetch) throws. */
function abortError(): Error {
  const error = new Error("The operation was aborted.");
  error.name = "AbortError";
  return error;
}

const key = (namespace: string, name: string) => `${namespace}/${name}`;
const clone = <T>(value: T): T => structuredClone(value);

/** RFC 6902 on a plain object, for the paths a ServiceAccount patch uses (object members and `-`). */
function jsonPatch(document: Record<string, unknown>, operations: readonly JsonPatchOperation[]): Record<string, unknown> | { failed: string } {
  const result = clone(document);
  for (const operation of operations) {
    const segments = operation.path
      .split("/")
      .slice(1)
      .map((segment) => segment.replace(/~1/g, "/").replace(/~0/g, "~"));
    const last = segments.pop() as string;
    let parent: unknown = result;
    for (const segment of segments) parent = (parent as Record<string, unknown> | undefined)?.[segment];
    if (typeof parent !== "object" || parent === null) return { failed: `doc is missing path: "${operation.path}"` };
    const target = parent as Record<string, unknown>;
    if (operation.op === "test") {
      if (JSON.stringify(target[last]) !== JSON.stringify(operation.value)) return { failed: `testing value ${operation.path} failed: test failed` };
    } else if (operation.op === "remove") {
      if (!(last in target)) return { failed: `Unable to remove nonexistent key: ${last}: missing value` };
      delete target[last];
    } else if (Array.isArray(target) && last === "-") {
      target.push(clone(operation.value));
    } else {
      if (operation.op === "replace" && !(last in target)) return { failed: `replace operation does not apply: doc is missing key: ${operation.path}` };
      target[last] = clone(operation.value);
    }
  }
  return result;
}

export function fakeCluster(options: FakeClusterOptions = {}): FakeCluster {
  const requestTimeoutMs = options.requestTimeoutMs ?? 50;
  const namespaces = new Map<string, NamespaceInfo>();
  const serviceAccounts = new Map<string, StoredServiceAccount>();
  const secrets = new Map<string, StoredSecret>();
  const configMaps = new Map<string, { data: Record<string, string>; labels: Record<string, string>; annotations: Record<string, string>; uid: string }>();
  const events = new Map<string, StoredEvent>();
  const pullSecretEvents: PullSecretEvent[] = [];
  const faults: PendingFault[] = [];
  const calls: FakeCluster["calls"] = [];
  let resourceVersion = 1000;
  let uids = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  const nextVersion = () => String(++resourceVersion);
  const nextUid = () => `00000000-0000-4000-8000-${String(++uids).padStart(12, "0")}`;

  /** One request: recorded, delayed, possibly faulted, and its errors shaped like the real client's. */
  async function request<T>(operation: Operation, what: string, target: { namespace?: string; name?: string }, work: () => T): Promise<T> {
    calls.push({ operation, ...target });
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    try {
      if (options.latencyMs !== undefined) await sleep(options.latencyMs);
      const index = faults.findIndex((fault) => fault.operation === operation && (fault.namespace === undefined || fault.namespace === target.namespace));
      if (index >= 0) {
        const pending = faults[index] as PendingFault;
        pending.remaining -= 1;
        if (pending.remaining === 0) faults.splice(index, 1);
        if (pending.fault === "hang") await sleep(requestTimeoutMs);
        if (pending.fault === "hang" || pending.fault === "timeout") throw abortError();
        const { status, reason, message } = pending.fault;
        throw apiError(status, reason ?? "InternalError", message ?? `injected failure of ${operation}`);
      }
      return work();
    } catch (error) {
      throw kubernetesError(error, what);
    } finally {
      inFlight -= 1;
    }
  }

  const saInfo = (sa: StoredServiceAccount): ServiceAccountInfo => ({
    namespace: sa.namespace,
    name: sa.name,
    uid: sa.uid,
    resourceVersion: sa.resourceVersion,
    imagePullSecrets: clone(sa.imagePullSecrets),
    annotations: clone(sa.annotations),
    ...(sa.imagePullSecretsAppliers === undefined ? {} : { imagePullSecretsAppliers: [...sa.imagePullSecretsAppliers] }),
  });

  /** The fields of an applied Secret, by path, with their values: what server-side apply compares. */
  const fieldsOf = (manifest: {
    type: string;
    data: Record<string, string>;
    labels: Record<string, string>;
    annotations: Record<string, string>;
  }): Record<string, string> => ({
    type: manifest.type,
    ...Object.fromEntries(Object.entries(manifest.data).map(([k, v]) => [`data.${k}`, v])),
    ...Object.fromEntries(Object.entries(manifest.labels).map(([k, v]) => [`metadata.labels.${k}`, v])),
    ...Object.fromEntries(Object.entries(manifest.annotations).map(([k, v]) => [`metadata.annotations.${k}`, v])),
  });
  const currentValue = (secret: StoredSecret, path: string): string | undefined => fieldsOf(secret)[path];

  return {
    calls,
    maxInFlight: () => maxInFlight,

    addNamespace(name, extra = {}) {
      const info: NamespaceInfo = { name, uid: nextUid(), terminating: false, annotations: {}, ...extra };
      namespaces.set(name, info);
      return info;
    },
    addServiceAccount(namespace, name, extra = {}) {
      const sa: StoredServiceAccount = {
        namespace,
        name,
        uid: nextUid(),
        resourceVersion: nextVersion(),
        imagePullSecrets: [],
        annotations: {},
        ...clone(extra),
      };
      serviceAccounts.set(key(namespace, name), sa);
      return sa;
    },
    createForeignSecret(namespace, name, { type = "kubernetes.io/dockerconfigjson", data = { ".dockerconfigjson": "e30=" }, manager = "kubectl-create" } = {}) {
      if (secrets.has(key(namespace, name))) throw new Error(`fake cluster: Secret ${namespace}/${name} already exists`);
      const secret: StoredSecret = {
        namespace,
        name,
        uid: nextUid(),
        resourceVersion: nextVersion(),
        type,
        data: { ...data },
        labels: {},
        annotations: {},
        owners: {},
      };
      secret.owners = Object.fromEntries(Object.keys(fieldsOf(secret)).map((path) => [path, manager]));
      secrets.set(key(namespace, name), secret);
      return secret;
    },
    addPullSecretEvent(event) {
      pullSecretEvents.push(clone(event));
    },
    removeSecret(namespace, name) {
      secrets.delete(key(namespace, name));
    },
    editServiceAccount(namespace, name, edit) {
      const sa = serviceAccounts.get(key(namespace, name));
      if (sa === undefined) throw new Error(`fake cluster: no ServiceAccount ${namespace}/${name}`);
      edit(sa);
      sa.resourceVersion = nextVersion();
    },
    secret: (namespace, name) => clone(secrets.get(key(namespace, name))),
    serviceAccount: (namespace, name) => clone(serviceAccounts.get(key(namespace, name))),
    events: () => [...events.values()].map(clone),
    configMap: (namespace, name) => clone(configMaps.get(key(namespace, name))),
    failNext(operation, fault, { namespace, times = 1 } = {}) {
      faults.push({ operation, fault, remaining: times, ...(namespace === undefined ? {} : { namespace }) });
    },

    readConfigMap(namespace, name) {
      return request("readConfigMap", `reading ConfigMap ${namespace}/${name}`, { namespace, name }, () => clone(configMaps.get(key(namespace, name))?.data));
    },
    readConfigMapWithAnnotations(namespace, name) {
      return request("readConfigMapWithAnnotations", `reading ConfigMap ${namespace}/${name}`, { namespace, name }, () => {
        const configMap = configMaps.get(key(namespace, name));
        return configMap === undefined ? undefined : { data: clone(configMap.data), annotations: clone(configMap.annotations), uid: configMap.uid };
      });
    },
    listNamespaces() {
      return request("listNamespaces", "listing namespaces", {}, () => [...namespaces.values()].map(clone));
    },
    listServiceAccounts(namespace) {
      return request(
        "listServiceAccounts",
        `listing ServiceAccounts${namespace === undefined ? "" : ` in ${namespace}`}`,
        namespace === undefined ? {} : { namespace },
        () => [...serviceAccounts.values()].filter((sa) => namespace === undefined || sa.namespace === namespace).map(saInfo),
      );
    },
    getServiceAccount(namespace, name) {
      return request("getServiceAccount", `reading ServiceAccount ${namespace}/${name}`, { namespace, name }, () => {
        const sa = serviceAccounts.get(key(namespace, name));
        return sa === undefined ? undefined : saInfo(sa);
      });
    },
    applySecret(manifest: SecretManifest, uid?: string) {
      const { namespace, name } = manifest.metadata;
      return request("applySecret", `applying Secret ${namespace}/${name}`, { namespace, name }, () => {
        if (!namespaces.has(namespace)) throw apiError(404, "NotFound", `namespaces "${namespace}" not found`);
        const applied = { type: manifest.type, data: manifest.data, labels: manifest.metadata.labels, annotations: manifest.metadata.annotations };
        const existing = secrets.get(key(namespace, name));
        if (existing === undefined) {
          if (uid !== undefined)
            throw apiError(
              409,
              "Conflict",
              `Operation cannot be fulfilled on secrets "${name}": uid mismatch: the provided object specified uid ${uid}, and no existing object was found`,
            );
          const created: StoredSecret = { namespace, name, uid: nextUid(), resourceVersion: nextVersion(), ...clone(applied), owners: {} };
          created.owners = Object.fromEntries(Object.keys(fieldsOf(created)).map((path) => [path, fieldManager]));
          secrets.set(key(namespace, name), created);
          return { uid: created.uid };
        }
        if (uid !== undefined && uid !== existing.uid) {
          const message = `metadata.uid: Invalid value: "${uid}": field is immutable`;
          throw apiError(422, "Invalid", `Secret "${name}" is invalid: ${message}`, [
            { reason: "FieldValueInvalid", field: "metadata.uid", message: `Invalid value: "${uid}": field is immutable` },
          ]);
        }
        // Server-side apply without force: a field another manager owns may only be applied with its current value.
        const wanted = fieldsOf(applied);
        const conflicts = Object.entries(wanted).filter(([path, value]) => {
          const owner = existing.owners[path];
          return owner !== undefined && owner !== fieldManager && currentValue(existing, path) !== value;
        });
        if (conflicts.length > 0) {
          const fields = conflicts.map(([path]) => `.${path}`);
          const ownerOf = (field: string) => existing.owners[field.slice(1)];
          throw apiError(
            409,
            "Conflict",
            `Apply failed with ${conflicts.length} conflict${conflicts.length === 1 ? "" : "s"}: ${fields.map((field) => `conflict with "${ownerOf(field)}": ${field}`).join(", ")}`,
            fields.map((field) => ({ reason: "FieldManagerConflict", field, message: `conflict with "${ownerOf(field)}"` })),
          );
        }
        if (existing.type !== applied.type) {
          throw apiError(422, "Invalid", `Secret "${name}" is invalid: type: Invalid value: "${applied.type}": field is immutable`, [
            { reason: "FieldValueInvalid", field: "type", message: `Invalid value: "${applied.type}": field is immutable` },
          ]);
        }
        // Fields the refresher applied before and leaves out now are removed; the rest is merged.
        const before = JSON.stringify(fieldsOf(existing));
        for (const [path, owner] of Object.entries(existing.owners)) {
          if (owner !== fieldManager || path in wanted) continue;
          const [section, ...rest] = path.split(".");
          const field = rest.join(".");
          if (section === "data") delete existing.data[field];
          else if (path.startsWith("metadata.labels.")) delete existing.labels[path.slice("metadata.labels.".length)];
          else if (path.startsWith("metadata.annotations.")) delete existing.annotations[path.slice("metadata.annotations.".length)];
          delete existing.owners[path];
        }
        Object.assign(existing.data, clone(applied.data));
        Object.assign(existing.labels, clone(applied.labels));
        Object.assign(existing.annotations, clone(applied.annotations));
        for (const path of Object.keys(wanted)) existing.owners[path] ??= fieldManager;
        // An apply that changes nothing keeps the resourceVersion (kubernetes PR #88875).
        if (JSON.stringify(fieldsOf(existing)) !== before) existing.resourceVersion = nextVersion();
        return { uid: existing.uid };
      });
    },
    patchServiceAccount(namespace, name, patch) {
      return request("patchServiceAccount", `patching ServiceAccount ${namespace}/${name}`, { namespace, name }, () => {
        const sa = serviceAccounts.get(key(namespace, name));
        if (sa === undefined) throw apiError(404, "NotFound", `serviceaccounts "${name}" not found`);
        const document = {
          metadata: { name, namespace, uid: sa.uid, resourceVersion: sa.resourceVersion, annotations: clone(sa.annotations) },
          imagePullSecrets: clone(sa.imagePullSecrets),
        };
        const patched = jsonPatch(document, patch);
        if ("failed" in patched) throw apiError(422, "Invalid", `the server rejected our request due to an error in our request: ${patched.failed as string}`);
        const metadata = patched.metadata as { annotations?: Record<string, string> };
        sa.annotations = metadata.annotations ?? {};
        sa.imagePullSecrets = (patched.imagePullSecrets as Array<{ name?: string }> | undefined) ?? [];
        sa.resourceVersion = nextVersion();
      });
    },
    deleteSecret(namespace, name, uid) {
      return request("deleteSecret", `deleting Secret ${namespace}/${name}`, { namespace, name }, (): "deleted" | "not-found" => {
        const existing = secrets.get(key(namespace, name));
        if (existing === undefined) return "not-found";
        if (existing.uid !== uid)
          throw apiError(
            409,
            "Conflict",
            `Operation cannot be fulfilled on secrets "${name}": Precondition failed: UID in precondition: ${uid}, UID in object meta: ${existing.uid}`,
          );
        secrets.delete(key(namespace, name));
        return "deleted";
      });
    },
    listPullSecretEvents() {
      return request("listPullSecretEvents", "listing Events about missing pull Secrets", {}, () => clone(pullSecretEvents));
    },
    createEvent(event, at = new Date()) {
      return request(
        "createEvent",
        `creating Event ${event.namespace}/${event.name}`,
        { namespace: event.namespace, name: event.name },
        (): "created" | "exists" => {
          if (events.has(key(event.namespace, event.name))) return "exists";
          events.set(key(event.namespace, event.name), { ...clone(event), at });
          return "created";
        },
      );
    },
    readEventCount(namespace, name) {
      return request("readEventCount", `reading Event ${namespace}/${name}`, { namespace, name }, () => {
        const event = events.get(key(namespace, name));
        if (event === undefined) throw apiError(404, "NotFound", `events.events.k8s.io "${name}" not found`);
        return event.series?.count ?? 1;
      });
    },
    patchEventSeries(namespace, name, series) {
      return request("patchEventSeries", `updating Event ${namespace}/${name}`, { namespace, name }, () => {
        const event = events.get(key(namespace, name));
        if (event === undefined) throw apiError(404, "NotFound", `events.events.k8s.io "${name}" not found`);
        event.series = { ...series };
      });
    },
    applyConfigMap(namespace, name, data, labels) {
      return request("applyConfigMap", `writing ConfigMap ${namespace}/${name}`, { namespace, name }, () => {
        if (!namespaces.has(namespace)) throw apiError(404, "NotFound", `namespaces "${namespace}" not found`);
        const existing = configMaps.get(key(namespace, name));
        configMaps.set(key(namespace, name), {
          data: clone(data),
          labels: clone(labels),
          annotations: existing?.annotations ?? {},
          uid: existing?.uid ?? nextUid(),
        });
      });
    },
  };
}
