import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import { Agent, fetch } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findPinnedKubeBinaries } from "./binaries.ts";
import { kubeAvailable } from "./cluster.ts";
import { startControlPlane, type ControlPlane } from "./control-plane.ts";

// The shared control plane signs with RSA like ACK; this one is started with the ECDSA option
// (envtest's default), so both token algorithms the broker must verify come from a real apiserver.
describe.skipIf(!kubeAvailable())("a control plane started with an ECDSA signing key", () => {
  let plane: ControlPlane;
  let clusterCa: Agent;

  beforeAll(async () => {
    const lookup = findPinnedKubeBinaries();
    if (!lookup.found) throw new Error(lookup.reason);
    plane = await startControlPlane({ binaries: lookup.binaries, signingKey: "ec" });
    clusterCa = new Agent({ connect: { ca: plane.caPem } });
  });

  afterAll(async () => {
    await clusterCa?.close();
    await plane?.stop();
  });

  it("issues ES256 tokens that verify against its own JWKS", async () => {
    const config = new KubeConfig();
    config.loadFromString(plane.kubeconfig);
    const core = config.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: "ec-signing" } } });
    await core.createNamespacedServiceAccount({ namespace: "ec-signing", body: { metadata: { name: "refresher" } } });
    const request = await core.createNamespacedServiceAccountToken({
      namespace: "ec-signing",
      name: "refresher",
      body: { spec: { audiences: ["acr-credential-broker"], expirationSeconds: 600 } },
    });
    const token = request.status?.token ?? "";

    const jwksResponse = await fetch(`${plane.issuer}/openid/v1/jwks`, { dispatcher: clusterCa });
    expect(jwksResponse.status).toBe(200);
    const jwks = (await jwksResponse.json()) as JSONWebKeySet;

    expect(plane.signingAlgorithm).toBe("ES256");
    expect(decodeProtectedHeader(token).alg).toBe("ES256");
    const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: plane.issuer, audience: "acr-credential-broker" });
    expect(payload.sub).toBe("system:serviceaccount:ec-signing:refresher");
  });
});
