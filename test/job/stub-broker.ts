import type { Credential, EntryError, RegistryRequest } from "../../shared/broker-api.ts";
import { startScriptedBroker, type ScriptedBroker } from "./scripted-broker.ts";

/**
 * A stand-in for the broker in the refresher's Kubernetes tests, where the broker is not the part
 * under test: it answers POST /v1/credentials with docs/broker.md, "HTTP API" responses whose passwords change when
 * `rotate()` is called. The end-to-end test uses the real broker instead.
 */
export interface StubBroker extends ScriptedBroker {
  /** Issue new passwords from now on, as after an expiry. */
  rotate(): void;
  /** Answer every request with an error for these registries (by instance id). */
  failFor(instanceIds: string[]): void;
  /** The credential the broker currently hands out for a registry. */
  credentialFor(registry: RegistryRequest): Credential;
}

export const stubExpiry = "2099-01-01T00:00:00Z";
export const stubClusterRegion = "cn-hangzhou";

export async function startStubBroker(): Promise<StubBroker> {
  let generation = 1;
  let failing = new Set<string>();
  const credentialFor = (requested: RegistryRequest): Credential => {
    // As the real broker with `regionId: cn-hangzhou` configured for the cluster.
    const registry = { ...requested, regionId: requested.regionId ?? stubClusterRegion };
    const instance = registry.instanceId ?? "personal";
    const domains =
      registry.domains ??
      (registry.instanceId === undefined
        ? [`registry.${registry.regionId}.aliyuncs.com`]
        : [`${instance}-registry.${registry.regionId}.cr.aliyuncs.com`, `${instance}-registry-vpc.${registry.regionId}.cr.aliyuncs.com`]);
    const credential: Credential = {
      regionId: registry.regionId,
      edition: registry.instanceId === undefined ? "personal" : "enterprise",
      domains,
      username: "cr_temp_user",
      password: `stub-password-${instance}-${generation}`,
      expiresAt: stubExpiry,
    };
    if (registry.instanceId !== undefined) credential.instanceId = registry.instanceId;
    return credential;
  };
  const server = await startScriptedBroker((request) => {
    if (request.method !== "POST" || request.url !== "/v1/credentials") return { status: 404, body: { error: { code: "NotFound", message: "no such route" } } };
    if (request.authorization === undefined || !request.authorization.startsWith("Bearer "))
      return { status: 401, body: { error: { code: "InvalidToken", message: "missing bearer token" } } };
    const registries = (request.body.registries ?? []) as RegistryRequest[];
    const credentials: Credential[] = [];
    const errors: EntryError[] = [];
    for (const registry of registries) {
      if (registry.instanceId !== undefined && failing.has(registry.instanceId)) {
        errors.push({
          instanceId: registry.instanceId,
          regionId: registry.regionId ?? stubClusterRegion,
          code: "UpstreamThrottled",
          message: "throttled by the stub",
        });
      } else {
        credentials.push(credentialFor(registry));
      }
    }
    return { status: 200, body: { cluster: "test-cluster", subject: "system:serviceaccount:kube-system:aliyun-acr-credential-helper", credentials, errors } };
  });
  return {
    ...server,
    rotate: () => void (generation += 1),
    failFor: (instanceIds) => void (failing = new Set(instanceIds)),
    credentialFor,
  };
}
