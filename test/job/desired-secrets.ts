/**
 * Credentials as the broker answers them and the Secrets the refresher wants from them, for the
 * tests that plan and apply without a broker.
 */
import type { Credential } from "../../shared/broker-api.ts";
import type { RefresherConfig } from "../../job/config.ts";
import { desiredSecret, type DesiredSecret } from "../../job/secret.ts";

export function credentialFor(instanceId: string, regionId: string, password = "pw-1", expiresAt = "2030-01-01T00:00:00Z"): Credential {
  return {
    instanceId,
    regionId,
    edition: "enterprise",
    domains: [`${instanceId}-registry.${regionId}.cr.aliyuncs.com`],
    username: "cr_temp_user",
    password,
    expiresAt,
  };
}

/** One desired Secret per configured registry, each with `password`. */
export function secretsOf(config: RefresherConfig, password = "pw-1"): Map<string, DesiredSecret> {
  return new Map(
    config.registries.map((registry) => [
      registry.secretName,
      desiredSecret(registry, credentialFor(registry.instanceId ?? "", registry.regionId ?? "cn-hangzhou", password), config.notifyEmail),
    ]),
  );
}
