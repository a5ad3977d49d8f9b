import { CoreV1Api, KubeConfig } from "@kubernetes/client-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findPinnedKubeBinaries } from "./binaries.ts";
import { kubeAvailable } from "./cluster.ts";
import { startControlPlane, type ControlPlane } from "./control-plane.ts";

// A control plane of its own: the shared one must never lose its apiserver under other test files.
describe.skipIf(!kubeAvailable())("stopping and starting a control plane's kube-apiserver", () => {
  let plane: ControlPlane;
  const core = () => {
    const config = new KubeConfig();
    config.loadFromString(plane.kubeconfig);
    return config.makeApiClient(CoreV1Api);
  };

  beforeAll(async () => {
    const lookup = findPinnedKubeBinaries();
    if (!lookup.found) throw new Error(lookup.reason);
    plane = await startControlPlane({ binaries: lookup.binaries });
  }, 120_000);

  afterAll(async () => {
    await plane?.stop();
  });

  it("refuses requests once stopped, and after start answers on the same address with the objects, keys and tokens of before", async () => {
    await core().createNamespace({ body: { metadata: { name: "kept-across-restart" } } });
    await core().createNamespacedServiceAccount({ namespace: "kept-across-restart", body: { metadata: { name: "reader" } } });
    const token = (await core().createNamespacedServiceAccountToken({ namespace: "kept-across-restart", name: "reader", body: { spec: { audiences: [] } } }))
      .status?.token;
    expect(token).toBeTruthy();

    await plane.apiserver.stop();
    await expect(core().listNamespace()).rejects.toThrow(/ECONNREFUSED/);

    await plane.apiserver.start();
    const names = (await core().listNamespace()).items.map((item) => item.metadata?.name);
    expect(names).toContain("kept-across-restart");
    // A token signed before the restart still authenticates: same signing key, same issuer.
    const asReader = new KubeConfig();
    asReader.loadFromOptions({
      clusters: [{ name: "plane", server: plane.apiserverUrl, caData: Buffer.from(plane.caPem).toString("base64") }],
      users: [{ name: "reader", token }],
      contexts: [{ name: "reader", cluster: "plane", user: "reader" }],
      currentContext: "reader",
    });
    await expect(asReader.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: "kept-across-restart" })).rejects.toMatchObject({ code: 403 });
  });

  it("keeps the apiserver out of the endpoints a spread hands on", () => {
    const { stop: _stop, startedInMs: _startedInMs, ...endpoints } = plane;
    expect(Object.keys(endpoints)).not.toContain("apiserver");
    expect(typeof plane.apiserver.start).toBe("function");
  });
});
