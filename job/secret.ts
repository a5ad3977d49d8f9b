import { createHash } from "node:crypto";
import type { Credential } from "../shared/broker-api.ts";
import { dockerConfigJson } from "../shared/docker-config.ts";
import { registryLabel, type RegistryEntry } from "./registry.ts";

/** The field manager of every write, so server-side apply can tell the refresher's fields from anyone else's. */
export const fieldManager = "acr-credential-broker";
export const managedByLabel = { "app.kubernetes.io/managed-by": "acr-credential-broker" } as const;
export const annotations = {
  expiresAt: "acr-credential-broker/expires-at",
  registry: "acr-credential-broker/registry",
  notifyEmail: "acr-credential-broker/notify-email",
  /** On a ServiceAccount: the `imagePullSecrets` entries the refresher added, the only ones it may remove. */
  managedPullSecrets: "acr-credential-broker/image-pull-secrets",
  /** On a Namespace: `"true"` keeps the refresher out. */
  exclude: "acr-credential-broker/exclude",
} as const;

export interface SecretManifest {
  apiVersion: "v1";
  kind: "Secret";
  metadata: { name: string; namespace: string; labels: Record<string, string>; annotations: Record<string, string> };
  type: "kubernetes.io/dockerconfigjson";
  data: { ".dockerconfigjson": string };
}

/** What one registry's Secret should hold, the same in every namespace. */
export interface DesiredSecret {
  name: string;
  registry: RegistryEntry;
  expiresAt: string;
  /** Short hash of the content: equal fingerprints mean an apply would change nothing. */
  fingerprint: string;
  /** The manifest for a namespace; it carries the password, so it is built on demand and never logged. */
  manifestFor(namespace: string): SecretManifest;
}

/**
 * Builds the desired Secret for a registry and its credential. The body holds only what the refresher
 * owns and no empty values, so re-applying it unchanged is a no-op on the server.
 */
export function desiredSecret(registry: RegistryEntry, credential: Credential, notifyEmail: string | undefined): DesiredSecret {
  const domains = credential.domains.length > 0 ? credential.domains : registry.domains;
  const data = {
    ".dockerconfigjson": Buffer.from(dockerConfigJson([{ domains, username: credential.username, password: credential.password }]), "utf8").toString("base64"),
  };
  const secretAnnotations: Record<string, string> = {
    [annotations.expiresAt]: credential.expiresAt,
    // The broker's answer names the region of an entry that left it to the cluster's.
    [annotations.registry]: registryLabel({ instanceId: registry.instanceId, regionId: registry.regionId ?? credential.regionId }),
  };
  if (notifyEmail !== undefined) secretAnnotations[annotations.notifyEmail] = notifyEmail;
  const fingerprint = createHash("sha256")
    .update(JSON.stringify([registry.secretName, secretAnnotations, data]))
    .digest("hex")
    .slice(0, 16);
  return {
    name: registry.secretName,
    registry,
    expiresAt: credential.expiresAt,
    fingerprint,
    manifestFor(namespace) {
      return {
        apiVersion: "v1",
        kind: "Secret",
        metadata: { name: registry.secretName, namespace, labels: { ...managedByLabel }, annotations: { ...secretAnnotations } },
        type: "kubernetes.io/dockerconfigjson",
        data: { ...data },
      };
    },
  };
}
