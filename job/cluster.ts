import {
  ApiException,
  CoreV1Api,
  EventsV1Api,
  Observable,
  type CoreV1Event,
  PatchStrategy,
  setHeaderOptions,
  type KubeConfig,
  type RequestContext,
  type ResponseContext,
  type V1Namespace,
  type V1ServiceAccount,
} from "@kubernetes/client-node";
import { Agent } from "node:https";
import { AcrCredentialError, type StatusCause } from "../shared/errors.ts";
import type { NamespaceInfo, ServiceAccountInfo } from "./plan.ts";
import { missingPullSecretSelector, type PullSecretEvent } from "./pull-secret-events.ts";
import { fieldManager, type SecretManifest } from "./secret.ts";
import type { JsonPatchOperation } from "./service-account-patch.ts";

/**
 * Everything the refresher asks of the Kubernetes API, and nothing more: it never reads a Secret.
 * The interface is what `apply` and `run` depend on; `kubernetesCluster` implements it with
 * `@kubernetes/client-node`, and tests may wrap it to interleave another client's edits.
 */
export interface ClusterApi {
  /** A ConfigMap's data, or `undefined` when it does not exist. */
  readConfigMap(namespace: string, name: string): Promise<Record<string, string> | undefined>;
  /** A ConfigMap's data and annotations (the resync annotation lives there), or `undefined` when it does not exist. */
  readConfigMapWithAnnotations(
    namespace: string,
    name: string,
  ): Promise<{ data: Record<string, string>; annotations: Record<string, string>; uid?: string } | undefined>;
  listNamespaces(): Promise<NamespaceInfo[]>;
  /** All ServiceAccounts of one namespace, or of the whole cluster when `namespace` is undefined. */
  listServiceAccounts(namespace?: string): Promise<ServiceAccountInfo[]>;
  getServiceAccount(namespace: string, name: string): Promise<ServiceAccountInfo | undefined>;
  /**
   * Server-side apply with the refresher's field manager and without force. With `uid`, the apply
   * only lands on that very Secret (a replaced one fails with 422, a deleted one with 409). Returns
   * the uid of the Secret written, the only thing read from the response.
   */
  applySecret(secret: SecretManifest, uid?: string): Promise<{ uid: string }>;
  patchServiceAccount(namespace: string, name: string, patch: JsonPatchOperation[]): Promise<void>;
  /** Deletes the Secret only if it still has `uid` (`DeleteOptions.preconditions`): a replaced Secret fails with 409. */
  deleteSecret(namespace: string, name: string, uid: string): Promise<"deleted" | "not-found">;
  /** The kubelet's Events about pull Secrets it could not find, cluster-wide (one field-selected list). */
  listPullSecretEvents(): Promise<PullSecretEvent[]>;
  /** Creates a Warning Event observed `at` (default now); `exists` when an Event of that name is already there (it says the same). */
  createEvent(event: RefresherEvent, at?: Date): Promise<"created" | "exists">;
  /** How many times an existing Event was observed (`series.count`, else 1). */
  readEventCount(namespace: string, name: string): Promise<number>;
  /** Sets an Event's `series`: it happened `count` times, the last at `lastObservedTime`. */
  patchEventSeries(namespace: string, name: string, series: { count: number; lastObservedTime: Date }): Promise<void>;
  /** Server-side apply of the refresher's own status ConfigMap (forced: nobody else owns its keys). */
  applyConfigMap(namespace: string, name: string, data: Record<string, string>, labels: Record<string, string>): Promise<void>;
}

/** An `events.k8s.io/v1` Warning Event about one object, in that object's namespace. */
export interface RefresherEvent {
  namespace: string;
  name: string;
  reason: string;
  action: string;
  note: string;
  /** With its uid, `kubectl describe` of the object lists the Event. */
  regarding: { kind: string; name: string; uid?: string };
}

/** A MicroTime: the API server wants exactly six fractional digits, which Date's JSON does not give. */
const microTime = (date: Date) => date.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z") as unknown as Date;

/** A failed Kubernetes request as one error: HTTP status, the `Status` reason and its field causes. */
export function kubernetesError(error: unknown, what: string): AcrCredentialError {
  if (error instanceof AcrCredentialError) return error;
  if (error instanceof ApiException) {
    const status = error.code;
    let body: { reason?: string; message?: string; details?: { causes?: StatusCause[] } } = {};
    try {
      body = typeof error.body === "string" ? JSON.parse(error.body) : ((error.body as typeof body | undefined) ?? {});
    } catch {
      body = {};
    }
    const reason = body.reason ?? (status === 401 ? "Unauthorized" : "Unknown");
    const message = (body.message ?? `HTTP ${status}`).replace(/\s+/g, " ");
    const hint = status === 401 ? "; the refresher's ServiceAccount token was rejected" : status === 403 ? "; check the refresher's RBAC from job/deploy" : "";
    return new AcrCredentialError("KubernetesError", `${what}: ${message} (HTTP ${status} ${reason})${hint}`, {
      cause: error,
      details: { status, statusReason: reason, causes: body.details?.causes ?? [] },
    });
  }
  if (error instanceof Error && error.name === "AbortError") {
    return new AcrCredentialError("KubernetesError", `${what}: the API server did not answer in time; check its health and the network path to it`, {
      cause: error,
      details: { status: 0, statusReason: "Timeout" },
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new AcrCredentialError("KubernetesError", `${what}: ${message.replace(/\s+/g, " ")}; check that the API server is reachable`, {
    cause: error,
    details: { status: 0, statusReason: "Network" },
  });
}

export function statusOf(error: unknown): number {
  return error instanceof AcrCredentialError ? (error.details.status ?? 0) : 0;
}

export function namespaceInfo(ns: V1Namespace): NamespaceInfo {
  return {
    name: ns.metadata?.name ?? "",
    uid: ns.metadata?.uid ?? "",
    terminating: ns.metadata?.deletionTimestamp !== undefined && ns.metadata?.deletionTimestamp !== null,
    annotations: ns.metadata?.annotations ?? {},
  };
}

const dateOf = (value: Date | string | undefined | null): Date | undefined => {
  if (value === undefined || value === null) return undefined;
  const date = value instanceof Date ? value : new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
};

export function pullSecretEvent(event: CoreV1Event): PullSecretEvent {
  const seen = [event.series?.lastObservedTime, event.lastTimestamp, event.eventTime, event.firstTimestamp, event.metadata?.creationTimestamp]
    .map(dateOf)
    .find((date) => date !== undefined);
  return { namespace: event.metadata?.namespace ?? event.involvedObject?.namespace ?? "", message: event.message ?? "", lastSeen: seen };
}

/**
 * The field managers other than the refresher that own `imagePullSecrets` through server-side apply
 * (Helm 4, Argo CD with ServerSideApply=true, kubectl apply --server-side): the list is atomic, so
 * each of them owns all of it, and any edit of ours would conflict with their next apply.
 */
export function imagePullSecretsAppliers(sa: V1ServiceAccount): string[] {
  const managers = (sa.metadata?.managedFields ?? [])
    .filter((entry) => entry.operation === "Apply" && entry.manager !== undefined && entry.manager !== fieldManager)
    .filter((entry) => typeof entry.fieldsV1 === "object" && entry.fieldsV1 !== null && "f:imagePullSecrets" in (entry.fieldsV1 as Record<string, unknown>))
    .map((entry) => entry.manager as string);
  return [...new Set(managers)].sort();
}

export function serviceAccountInfo(sa: V1ServiceAccount): ServiceAccountInfo {
  const info: ServiceAccountInfo = {
    namespace: sa.metadata?.namespace ?? "",
    name: sa.metadata?.name ?? "",
    ...(sa.metadata?.uid === undefined ? {} : { uid: sa.metadata.uid }),
    resourceVersion: sa.metadata?.resourceVersion ?? "",
    imagePullSecrets: (sa.imagePullSecrets ?? []).map((entry) => (entry.name === undefined ? {} : { name: entry.name })),
    annotations: sa.metadata?.annotations ?? {},
  };
  const appliers = imagePullSecretsAppliers(sa);
  if (appliers.length > 0) info.imagePullSecretsAppliers = appliers;
  return info;
}

/** Lists are paginated so 2,000 namespaces never arrive as one huge response. */
const pageSize = 500;

async function allPages<T>(fetchPage: (continueToken: string | undefined) => Promise<{ items: T[]; metadata?: { _continue?: string } }>): Promise<T[]> {
  const items: T[] = [];
  let token: string | undefined;
  do {
    const page = await fetchPage(token);
    items.push(...page.items);
    token = page.metadata?._continue || undefined;
  } while (token !== undefined);
  return items;
}

type RequestOptions = ReturnType<typeof setHeaderOptions>;
type Middleware = NonNullable<RequestOptions["middleware"]>[number];

/**
 * Every request gets its own deadline: a stalled connection must not hang a run (or, in watch
 * mode, the reconcile queue) forever. The object-parameter API passes middlewares to the
 * observable layer unwrapped, so they return the library's `Observable`, as `setHeaderOptions` does.
 */
function deadline(milliseconds: number): Middleware {
  return {
    pre: (context: RequestContext) => {
      context.setSignal(AbortSignal.timeout(milliseconds));
      return new Observable(Promise.resolve(context));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
}

/**
 * client-node builds a new TLS agent for every request, so 2,000 namespaces cost 4,000 handshakes.
 * This hands every request one keep-alive agent with the same TLS options instead; authentication
 * travels in headers, which client-node still sets per request (a rotated token is picked up).
 */
function sharedConnections(maxSockets: number): Middleware {
  let shared: Agent | undefined;
  return {
    pre: (context: RequestContext) => {
      const agent = context.getAgent();
      if (agent instanceof Agent) {
        shared ??= new Agent({ ...agent.options, keepAlive: true, maxSockets });
        context.setAgent(shared);
      }
      return new Observable(Promise.resolve(context));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
}

/** Tells `observe` about every request as it is sent: method and URL, never a header or a body. */
function observing(observe: (request: { method: string; url: string }) => void): Middleware {
  return {
    pre: (context: RequestContext) => {
      observe({ method: context.getHttpMethod(), url: context.getUrl() });
      return new Observable(Promise.resolve(context));
    },
    post: (response: ResponseContext) => new Observable(Promise.resolve(response)),
  };
}

export function kubernetesCluster(
  kubeConfig: KubeConfig,
  options: { requestTimeoutMs?: number; observe?: (request: { method: string; url: string }) => void } = {},
): ClusterApi {
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const events = kubeConfig.makeApiClient(EventsV1Api);
  const middleware = [
    deadline(options.requestTimeoutMs ?? 30_000),
    sharedConnections(32),
    ...(options.observe === undefined ? [] : [observing(options.observe)]),
  ];
  const requestOptions: RequestOptions = { middleware, middlewareMergeStrategy: "append" };
  const applyOptions = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply, requestOptions);
  const jsonPatchOptions = setHeaderOptions("Content-Type", PatchStrategy.JsonPatch, requestOptions);
  const call = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    try {
      return await request();
    } catch (error) {
      throw kubernetesError(error, what);
    }
  };

  const readConfigMapWithAnnotations = async (namespace: string, name: string) => {
    try {
      const configMap = await core.readNamespacedConfigMap({ namespace, name }, requestOptions);
      return {
        data: configMap.data ?? {},
        annotations: configMap.metadata?.annotations ?? {},
        ...(configMap.metadata?.uid === undefined ? {} : { uid: configMap.metadata.uid }),
      };
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw kubernetesError(error, `reading ConfigMap ${namespace}/${name}`);
    }
  };

  return {
    async readConfigMap(namespace, name) {
      return (await readConfigMapWithAnnotations(namespace, name))?.data;
    },
    readConfigMapWithAnnotations,
    async listNamespaces() {
      const items = await call("listing namespaces", () => allPages((_continue) => core.listNamespace({ limit: pageSize, _continue }, requestOptions)));
      return items.map(namespaceInfo);
    },
    async listServiceAccounts(namespace) {
      const items = await call(`listing ServiceAccounts${namespace === undefined ? "" : ` in ${namespace}`}`, () =>
        allPages((_continue) =>
          namespace === undefined
            ? core.listServiceAccountForAllNamespaces({ limit: pageSize, _continue }, requestOptions)
            : core.listNamespacedServiceAccount({ namespace, limit: pageSize, _continue }, requestOptions),
        ),
      );
      return items.map(serviceAccountInfo);
    },
    async getServiceAccount(namespace, name) {
      try {
        return serviceAccountInfo(await core.readNamespacedServiceAccount({ namespace, name }, requestOptions));
      } catch (error) {
        if (error instanceof ApiException && error.code === 404) return undefined;
        throw kubernetesError(error, `reading ServiceAccount ${namespace}/${name}`);
      }
    },
    async applySecret(secret, uid) {
      const { name, namespace } = secret.metadata;
      // `metadata.uid` in an apply is a precondition: it must match the stored Secret (or the apply fails).
      const body = uid === undefined ? secret : { ...secret, metadata: { ...secret.metadata, uid } };
      // The response echoes the Secret, password included: only its uid is kept.
      const written = await call(`applying Secret ${namespace}/${name}`, () =>
        core.patchNamespacedSecret({ name, namespace, body, fieldManager, force: false }, applyOptions),
      );
      return { uid: written.metadata?.uid ?? "" };
    },
    async patchServiceAccount(namespace, name, patch) {
      await call(`patching ServiceAccount ${namespace}/${name}`, () =>
        core.patchNamespacedServiceAccount({ name, namespace, body: patch, fieldManager }, jsonPatchOptions),
      );
    },
    async deleteSecret(namespace, name, uid) {
      try {
        // The response is the deleted Secret: it is dropped unread.
        await core.deleteNamespacedSecret({ name, namespace, body: { preconditions: { uid } } }, requestOptions);
        return "deleted";
      } catch (error) {
        if (error instanceof ApiException && error.code === 404) return "not-found";
        throw kubernetesError(error, `deleting Secret ${namespace}/${name}`);
      }
    },
    async listPullSecretEvents() {
      const items = await call("listing Events about missing pull Secrets", () =>
        allPages((_continue) => core.listEventForAllNamespaces({ fieldSelector: missingPullSecretSelector, limit: pageSize, _continue }, requestOptions)),
      );
      return items.map(pullSecretEvent);
    },
    async createEvent(event, at = new Date()) {
      const body = {
        metadata: { name: event.name, namespace: event.namespace, labels: { "app.kubernetes.io/managed-by": fieldManager } },
        eventTime: microTime(at),
        type: "Warning",
        reason: event.reason,
        action: event.action,
        note: event.note,
        regarding: {
          apiVersion: "v1",
          kind: event.regarding.kind,
          namespace: event.namespace,
          name: event.regarding.name,
          ...(event.regarding.uid === undefined ? {} : { uid: event.regarding.uid }),
        },
        reportingController: "acr-credential-broker.io/refresher",
        reportingInstance: "acr-credential-refresher",
      };
      try {
        await events.createNamespacedEvent({ namespace: event.namespace, body }, requestOptions);
        return "created";
      } catch (error) {
        if (error instanceof ApiException && error.code === 409) return "exists";
        throw kubernetesError(error, `creating Event ${event.namespace}/${event.name}`);
      }
    },
    async readEventCount(namespace, name) {
      const event = await call(`reading Event ${namespace}/${name}`, () => events.readNamespacedEvent({ namespace, name }, requestOptions));
      return event.series?.count ?? 1;
    },
    async patchEventSeries(namespace, name, series) {
      const body = { series: { count: series.count, lastObservedTime: microTime(series.lastObservedTime) } };
      await call(`updating Event ${namespace}/${name}`, () =>
        events.patchNamespacedEvent({ namespace, name, body }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch, requestOptions)),
      );
    },
    async applyConfigMap(namespace, name, data, labels) {
      const body = { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace, labels }, data };
      await call(`writing ConfigMap ${namespace}/${name}`, () =>
        core.patchNamespacedConfigMap({ name, namespace, body, fieldManager, force: true }, applyOptions),
      );
    },
  };
}
