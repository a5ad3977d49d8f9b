/**
 * The promise "the refresher's token reads no Secret" tested on the token itself, not on the code:
 * every verb its RBAC grants (and the ones it does not), every patch type, with and without dry run,
 * sent as raw HTTP with the refresher's ServiceAccount token under the shipped RBAC and admission
 * policy. Every response body, error or not, is searched for the foreign Secret's value.
 */
import { randomBytes } from "node:crypto";
import { RbacAuthorizationV1Api, type V1Secret } from "@kubernetes/client-node";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { adminConfig, apply, createNamespace, createServiceAccount, kubeAvailable, kubeEnv, serviceAccountToken } from "../kube/cluster.ts";
import { acquireRefresherLock } from "./kube-lock.ts";
import { core, installRefresher, refresherAccount, type RefresherFixture } from "./refresher-fixture.ts";

interface Answer {
  request: string;
  status: number;
  body: string;
}

function client(token: string) {
  const { apiserverUrl, caPem } = kubeEnv();
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return {
    async send(method: string, path: string, contentType?: string, body?: unknown): Promise<Answer> {
      const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: "application/json" };
      if (contentType !== undefined) headers["content-type"] = contentType;
      const request = `${method} ${path}${contentType === undefined ? "" : ` (${contentType})`}`;
      const response = await fetch(`${apiserverUrl}${path}`, {
        method,
        headers,
        dispatcher,
        ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
        signal: AbortSignal.timeout(5_000),
      });
      // A granted watch streams until the deadline: whatever arrived by then is what leaked.
      const text = await response.text().catch((error: unknown) => `(stream ended: ${String(error)})`);
      return { request, status: response.status, body: text };
    },
    close: () => dispatcher.close(),
  };
}

/** Every request the refresher's token could make against one existing Secret, with and without `dryRun=All`. */
function requestsFor(namespace: string, name: string, type: string): Array<[method: string, path: string, contentType?: string, body?: unknown]> {
  const one = `/api/v1/namespaces/${namespace}/secrets/${name}`;
  const all = `/api/v1/namespaces/${namespace}/secrets`;
  const reads: Array<[string, string]> = [
    ["GET", one],
    ["GET", all],
    ["GET", "/api/v1/secrets"],
    ["GET", `${all}?watch=1&fieldSelector=metadata.name%3D${name}`],
    ["GET", "/api/v1/secrets?watch=1"],
  ];
  const skeleton = { apiVersion: "v1", kind: "Secret", metadata: { name, namespace } };
  // Shaped like the refresher's own Secret, so that only the existing object can refuse it.
  const own = {
    ...skeleton,
    metadata: { ...skeleton.metadata, labels: { "app.kubernetes.io/managed-by": "acr-credential-broker" } },
    type: "kubernetes.io/dockerconfigjson",
    data: { ".dockerconfigjson": Buffer.from('{"auths":{}}').toString("base64") },
  };
  const writes: Array<[string, string, string?, unknown?]> = [
    ["PATCH", one, "application/merge-patch+json", {}],
    ["PATCH", one, "application/strategic-merge-patch+json", {}],
    ["PATCH", one, "application/json-patch+json", []],
    ["PATCH", one, "application/json-patch+json", [{ op: "test", path: "/metadata/name", value: name }]],
    ["PATCH", `${one}?fieldManager=acr-credential-broker`, "application/apply-patch+yaml", skeleton],
    // Taking every field over, label included (the type stays: it is immutable, and would be refused first).
    ["PATCH", `${one}?fieldManager=acr-credential-broker&force=true`, "application/apply-patch+yaml", { ...skeleton, metadata: own.metadata, type }],
    ["PUT", one, "application/json", skeleton],
    ["POST", all, "application/json", skeleton],
    ["POST", all, "application/json", own],
    ["DELETE", one],
    ["DELETE", one, "application/json", { propagationPolicy: "Background" }],
  ];
  const dryRun = writes.map(([method, path, contentType, body]): [string, string, string?, unknown?] => [
    method,
    `${path}${path.includes("?") ? "&" : "?"}dryRun=All`,
    contentType,
    body,
  ]);
  return [...reads, ...dryRun, ...writes];
}

describe.skipIf(!kubeAvailable())("the refresher's token against Secrets that are not its own", () => {
  let release: () => Promise<void>;
  let fixture: RefresherFixture;
  let namespace: string;
  const canary = randomBytes(18).toString("hex");
  /** The forms in which the value could appear in a response: as stored (base64) and decoded. */
  const leaks = (text: string): boolean => text.includes(canary) || text.includes(Buffer.from(canary).toString("base64"));
  const foreign: V1Secret[] = [];

  beforeAll(async () => {
    release = await acquireRefresherLock("secret-policy.kube.test");
    fixture = await installRefresher();
    namespace = await createNamespace("policy");
    const value = Buffer.from(canary).toString("base64");
    // A team's database password; a pull secret that happens to have the refresher's name and label
    // (made with kubectl, so not written by the refresher); and a service-account token Secret.
    foreign.push(await core().createNamespacedSecret({ namespace, body: { metadata: { name: "team-database" }, type: "Opaque", data: { password: value } } }));
    foreign.push(
      await core().createNamespacedSecret({
        namespace,
        body: {
          metadata: { name: `acr-credential-${"0".repeat(32)}`, labels: { "app.kubernetes.io/managed-by": "acr-credential-broker" } },
          type: "kubernetes.io/dockerconfigjson",
          data: { ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { "r.example.com": { auth: canary } } })).toString("base64"), extra: value },
        },
      }),
    );
    foreign.push(
      await core().createNamespacedSecret({ namespace, body: { metadata: { name: "basic" }, type: "kubernetes.io/basic-auth", data: { password: value } } }),
    );
  });

  afterAll(async () => {
    await fixture?.close();
    await release?.();
  });

  it("gets no byte of their data through any verb, patch type or dry run, and changes nothing", async () => {
    const token = await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, [], 600);
    const api = client(token);
    const answers: Answer[] = [];
    try {
      for (const secret of foreign) {
        for (const [method, path, contentType, body] of requestsFor(namespace, secret.metadata?.name ?? "", secret.type ?? ""))
          answers.push(await api.send(method, path, contentType, body));
      }
    } finally {
      await api.close();
    }
    expect(answers.length).toBeGreaterThan(80);
    expect(answers.filter((answer) => leaks(answer.body)).map((answer) => answer.request)).toEqual([]);
    // Refused outright: nothing was written, no object was echoed. RBAC refuses reads and PUT; the
    // admission policy every PATCH, DELETE and CREATE of a foreign Secret, dry run or not; a create
    // shaped like the refresher's own Secret passes the policy and fails on the existing name.
    expect(answers.filter((answer) => answer.status < 400).map((answer) => `${answer.status} ${answer.request}`)).toEqual([]);
    const reasons = new Set(answers.map((answer) => (JSON.parse(answer.body) as { reason?: string }).reason));
    expect([...reasons].sort()).toEqual(["AlreadyExists", "Forbidden"]);
    for (const secret of foreign) {
      const now = await core().readNamespacedSecret({ namespace, name: secret.metadata?.name ?? "" });
      expect(now.metadata?.resourceVersion, secret.metadata?.name).toBe(secret.metadata?.resourceVersion);
    }
  });

  it("may not create a Secret that is not a refresher pull secret, such as a ServiceAccount token", async () => {
    const token = await serviceAccountToken(refresherAccount.namespace, refresherAccount.name, [], 600);
    const api = client(token);
    try {
      const tokenSecret = await api.send("POST", `/api/v1/namespaces/${namespace}/secrets`, "application/json", {
        metadata: {
          name: `acr-credential-${"1".repeat(32)}`,
          labels: { "app.kubernetes.io/managed-by": "acr-credential-broker" },
          annotations: { "kubernetes.io/service-account.name": "default" },
        },
        type: "kubernetes.io/service-account-token",
      });
      expect(tokenSecret.status).toBe(403);
      const opaque = await api.send("POST", `/api/v1/namespaces/${namespace}/secrets`, "application/json", {
        metadata: { name: "anything" },
        type: "Opaque",
        data: {},
      });
      expect(opaque.status).toBe(403);
    } finally {
      await api.close();
    }
  });

  it("without the policy, the same RBAC reads any Secret through a no-op patch and may delete it (what the policy prevents)", async () => {
    // A second account bound to the refresher's ClusterRole but outside the policy's match condition.
    const twinNamespace = await createNamespace("policy-twin");
    await createServiceAccount(twinNamespace, "rbac-twin");
    const binding = `acr-policy-twin-${randomBytes(3).toString("hex")}`;
    await apply([
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name: binding },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "acr-credential-refresher" },
        subjects: [{ kind: "ServiceAccount", name: "rbac-twin", namespace: twinNamespace }],
      },
    ]);
    const api = client(await serviceAccountToken(twinNamespace, "rbac-twin", [], 600));
    try {
      const patched = await api.send("PATCH", `/api/v1/namespaces/${namespace}/secrets/team-database`, "application/merge-patch+json", {});
      expect(patched.status).toBe(200);
      expect(leaks(patched.body)).toBe(true);
      // A Secret's DELETE answers with a Status (name and uid), not the object: no data, but the Secret would be gone.
      const deleted = await api.send("DELETE", `/api/v1/namespaces/${namespace}/secrets/team-database?dryRun=All`);
      expect(deleted.status).toBe(200);
      expect(JSON.parse(deleted.body)).toMatchObject({ kind: "Status", status: "Success" });
    } finally {
      await api.close();
      await adminConfig().makeApiClient(RbacAuthorizationV1Api).deleteClusterRoleBinding({ name: binding });
    }
  });
});
