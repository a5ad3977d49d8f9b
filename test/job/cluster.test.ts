import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AcrCredentialError } from "../../shared/errors.ts";
import { kubernetesCluster } from "../../job/cluster.ts";

/**
 * An API server that accepts connections and never answers: a stall the real kube-apiserver cannot
 * be made to produce on demand, hence this stand-in.
 */
let silent: Server;
let url: string;

beforeAll(async () => {
  silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
});

afterAll(async () => {
  silent.closeAllConnections();
  await new Promise<void>((resolve) => silent.close(() => resolve()));
});

describe("kubernetesCluster against a stalled API server (fake: the real one cannot stall on demand)", () => {
  it("gives up on a request after its deadline with a KubernetesError, instead of hanging the run", async () => {
    const kubeConfig = new KubeConfig();
    kubeConfig.loadFromOptions({
      clusters: [{ name: "c", server: url, skipTLSVerify: true }],
      users: [{ name: "u", token: "t" }],
      contexts: [{ name: "x", cluster: "c", user: "u" }],
      currentContext: "x",
    });
    const cluster = kubernetesCluster(kubeConfig, { requestTimeoutMs: 300 });
    const error = await cluster.listNamespaces().then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toBeInstanceOf(AcrCredentialError);
    expect((error as AcrCredentialError).code).toBe("KubernetesError");
    expect((error as AcrCredentialError).message).toMatch(/listing namespaces: the API server did not answer in time/);
  });
});
