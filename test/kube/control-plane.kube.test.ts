import { ApiException, CoreV1Api, type V1Role, type V1RoleBinding, type V1Secret } from "@kubernetes/client-node";
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from "jose";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { adminConfig, apply, createNamespace, createServiceAccount, kubeAvailable, kubeConfigForToken, kubeEnv, serviceAccountToken } from "./cluster.ts";

const discoveryDocument = z.object({ issuer: z.string(), jwks_uri: z.string(), id_token_signing_alg_values_supported: z.array(z.string()) });
const jsonWebKeySet = z.object({ keys: z.array(z.looseObject({ kty: z.string(), kid: z.string() })).min(1) });

/** The status code of a failed client-node call, or "allowed" when it succeeded. */
async function outcome(call: Promise<unknown>): Promise<number | "allowed"> {
  try {
    await call;
    return "allowed";
  } catch (error) {
    if (error instanceof ApiException) return error.code;
    throw error;
  }
}

describe.skipIf(!kubeAvailable())("the Kubernetes test control plane", () => {
  let namespace: string;
  let clusterCa: Agent;

  // Anonymous GET over https, trusting only the cluster's CA, as the broker fetches discovery.
  async function getWithoutCredentials(url: string): Promise<unknown> {
    const response = await fetch(url, { dispatcher: clusterCa });
    expect(response.status, `GET ${url}`).toBe(200);
    return response.json();
  }

  beforeAll(async () => {
    clusterCa = new Agent({ connect: { ca: kubeEnv().caPem } });
    namespace = await createNamespace("control-plane");
  });

  afterAll(async () => {
    await clusterCa?.close();
  });

  it("answers the admin with a namespace list that includes a namespace it just created", async () => {
    const namespaces = await adminConfig().makeApiClient(CoreV1Api).listNamespace();
    expect(namespaces.items.map((item) => item.metadata?.name)).toContain(namespace);
  });

  it("refuses an API request without credentials", async () => {
    const response = await fetch(`${kubeEnv().apiserverUrl}/api/v1/namespaces`, { dispatcher: clusterCa });
    await response.body?.cancel();
    expect(response.status).toBe(403);
  });

  it("serves the issuer's discovery document and JWKS over https without credentials", async () => {
    const { issuer } = kubeEnv();
    expect(issuer).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const discovery = discoveryDocument.parse(await getWithoutCredentials(`${issuer}/.well-known/openid-configuration`));
    expect(discovery.issuer).toBe(issuer);
    expect(discovery.jwks_uri).toBe(`${issuer}/openid/v1/jwks`);
    expect(discovery.id_token_signing_alg_values_supported).toEqual(["RS256"]);
    const jwks = jsonWebKeySet.parse(await getWithoutCredentials(discovery.jwks_uri));
    expect(jwks.keys.map((key) => key.kty)).toEqual(["RSA"]);
  });

  it("issues a TokenRequest token for audience acr-credential-broker that jose verifies against the issuer's JWKS", async () => {
    const serviceAccount = await createServiceAccount(namespace, "refresher");
    const token = await serviceAccountToken(namespace, "refresher", ["acr-credential-broker"], 600);

    const { issuer } = kubeEnv();
    const discovery = discoveryDocument.parse(await getWithoutCredentials(`${issuer}/.well-known/openid-configuration`));
    const jwks = jsonWebKeySet.parse(await getWithoutCredentials(discovery.jwks_uri)) as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: discovery.issuer,
      audience: "acr-credential-broker",
      algorithms: ["RS256"],
    });

    expect(protectedHeader.alg).toBe("RS256");
    expect(payload.sub).toBe(`system:serviceaccount:${namespace}:refresher`);
    expect(payload.aud).toEqual(["acr-credential-broker"]);
    expect(payload["kubernetes.io"]).toMatchObject({
      namespace,
      serviceaccount: { name: "refresher", uid: serviceAccount.metadata?.uid },
    });
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(600);
  });

  it("rejects at the apiserver a token whose audience is only acr-credential-broker", async () => {
    await createServiceAccount(namespace, "broker-audience-only");
    const token = await serviceAccountToken(namespace, "broker-audience-only", ["acr-credential-broker"]);
    const client = kubeConfigForToken(token).makeApiClient(CoreV1Api);
    expect(await outcome(client.listNamespacedServiceAccount({ namespace }))).toBe(401);
  });

  it("leaves a Secret's resourceVersion unchanged when the same server-side apply is sent twice", async () => {
    const secret = (auth: string): V1Secret => ({
      apiVersion: "v1",
      kind: "Secret",
      metadata: { name: "pull-secret", namespace, labels: { "app.kubernetes.io/managed-by": "acr-credential-broker" } },
      type: "kubernetes.io/dockerconfigjson",
      data: {
        ".dockerconfigjson": Buffer.from(JSON.stringify({ auths: { "registry.example.test": { auth } } })).toString("base64"),
      },
    });

    const [first] = await apply([secret("dXNlcjpvbmU=")], "acr-credential-refresher");
    const [second] = await apply([secret("dXNlcjpvbmU=")], "acr-credential-refresher");
    const [changed] = await apply([secret("dXNlcjp0d28=")], "acr-credential-refresher");

    expect(first?.metadata?.resourceVersion).toBeTruthy();
    expect(second?.metadata?.resourceVersion).toBe(first?.metadata?.resourceVersion);
    expect(changed?.metadata?.resourceVersion).not.toBe(first?.metadata?.resourceVersion);
  });

  it("denies a ServiceAccount's token `get secrets` until a Role grants it, and still denies what the Role leaves out", async () => {
    await apply([{ apiVersion: "v1", kind: "Secret", metadata: { name: "guarded", namespace }, data: { key: "dmFsdWU=" } } as V1Secret]);
    await createServiceAccount(namespace, "reader");
    const client = kubeConfigForToken(await serviceAccountToken(namespace, "reader")).makeApiClient(CoreV1Api);

    expect(await outcome(client.readNamespacedSecret({ name: "guarded", namespace }))).toBe(403);

    await apply([
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        metadata: { name: "read-secrets", namespace },
        rules: [{ apiGroups: [""], resources: ["secrets"], verbs: ["get"] }],
      } satisfies V1Role,
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        metadata: { name: "reader-reads-secrets", namespace },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "read-secrets" },
        subjects: [{ kind: "ServiceAccount", name: "reader", namespace }],
      } satisfies V1RoleBinding,
    ]);

    // The RBAC authorizer reads Roles from an informer cache, so the grant takes effect within moments.
    await expect.poll(() => outcome(client.readNamespacedSecret({ name: "guarded", namespace })), { timeout: 10_000 }).toBe("allowed");
    expect(await outcome(client.listNamespacedSecret({ namespace }))).toBe(403);
    expect(await outcome(client.deleteNamespacedSecret({ name: "guarded", namespace }))).toBe(403);
  });
});
