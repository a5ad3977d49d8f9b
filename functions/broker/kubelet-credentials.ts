/**
 * `POST /v1/kubelet-credentials`: the broker half of the kubelet image credential provider
 * (docs/kubelet-provider.md). The plugin on the node forwards the pod's ServiceAccount token (audience
 * the provider's) and the annotations it passes; the answer is the kubelet's own
 * CredentialProviderResponse, so the plugin only relays it. Credentials come from the same caches as
 * `POST /v1/credentials`: a thousand pods of one grant cost the upstream calls of one.
 */
import { decodeJwt } from "jose";
import { z } from "zod";
import { isAcrCredentialError, refusal } from "../../shared/errors.ts";
import { bearerToken, issueContext, parseJsonBody, type CallerContext } from "./broker.ts";
import type { BrokerConfig } from "./config.ts";
import { issue, type IssueResult } from "./issue.ts";
import { cacheDurationSeconds, imageRegistry, kubeletEntries } from "./kubelet-grants.ts";
import type { BrokerRuntime } from "./runtime.ts";

export const kubeletRequestSchema = z.strictObject({
  image: z.string().min(1).max(4096),
  serviceAccountAnnotations: z.record(z.string().min(1).max(317), z.string().max(4096)).optional(),
});
export type KubeletRequest = z.infer<typeof kubeletRequestSchema>;

/** `credentialprovider.kubelet.k8s.io/v1` CredentialProviderResponse. */
export interface KubeletResponse {
  apiVersion: "credentialprovider.kubelet.k8s.io/v1";
  kind: "CredentialProviderResponse";
  cacheKeyType: "Registry";
  /** A Go duration; "0s" tells the kubelet not to cache the answer. */
  cacheDuration: string;
  auth: Record<string, { username: string; password: string }>;
}

const parseKubeletRequest = (body: Buffer): KubeletRequest => parseJsonBody(body, kubeletRequestSchema, '{"image": "...", "serviceAccountAnnotations": {...}}');

/** Per configuration (built once per instance): the clusters with an audience of their own, by issuer. */
const ownAudiences = new WeakMap<BrokerConfig, Map<string, string>>();

/** The audience the token must carry: that of the cluster named by its (not yet trusted) issuer. */
function audienceFor(config: BrokerConfig, token: string): string {
  let byIssuer = ownAudiences.get(config);
  if (!byIssuer) {
    byIssuer = new Map(config.clusters.flatMap((c) => (c.kubeletProvider?.audience ? [[c.issuer, c.kubeletProvider.audience] as const] : [])));
    ownAudiences.set(config, byIssuer);
  }
  let iss: unknown;
  try {
    iss = decodeJwt(token).iss;
  } catch {
    // The verifier reports what is wrong with it.
  }
  return (typeof iss === "string" ? byIssuer.get(iss) : undefined) ?? config.kubeletProvider.audience;
}

export async function issueKubeletCredentials(
  runtime: BrokerRuntime,
  input: { authorization: string | undefined; body: Buffer },
  caller: CallerContext,
): Promise<KubeletResponse> {
  const token = bearerToken(input.authorization);
  const verified = await runtime.verifyToken(token, { audience: audienceFor(runtime.config, token) });
  caller.annotate({ cluster: verified.cluster.name, subject: verified.subject });
  const request = parseKubeletRequest(input.body);
  const entries = kubeletEntries(verified.cluster.kubeletProvider, runtime.config.kubeletProvider.roleAnnotation, {
    clusterName: verified.cluster.name,
    subject: verified.subject,
    annotations: request.serviceAccountAnnotations ?? {},
  });

  // Registries whose configured domains cannot serve the image are not asked for at all.
  const host = imageRegistry(request.image);
  const candidates = entries.filter((entry) => !entry.target.domains || entry.target.domains.includes(host));
  caller.annotate({ instances: candidates.map((entry) => `${entry.instanceId ?? "personal"}@${entry.regionId}`) });
  const context = issueContext(caller, verified.cluster.name);
  let failure: unknown;
  for (const entry of candidates) {
    let issued: IssueResult;
    try {
      issued = await issue(runtime.issue, entry.chain, entry.target, context);
    } catch (error) {
      if (!isAcrCredentialError(error)) throw error;
      failure ??= error;
      continue;
    }
    if (!issued.domains.includes(host)) continue;
    caller.annotate({ stale: issued.stale ? 1 : 0 });
    const { username, password } = issued.credential;
    return {
      apiVersion: "credentialprovider.kubelet.k8s.io/v1",
      kind: "CredentialProviderResponse",
      cacheKeyType: "Registry",
      cacheDuration: `${cacheDurationSeconds(issued.credential.expiresAt, runtime.clock.now(), runtime.config.refreshBeforeExpirySeconds)}s`,
      auth: Object.fromEntries(issued.domains.map((domain) => [domain, { username, password }])),
    };
  }
  // An upstream failure may have hidden the registry serving the image: report it rather than a refusal.
  if (failure) throw failure;
  throw refusal(
    "registry-not-granted",
    `no registry granted to ServiceAccount '${verified.subject}' of cluster '${verified.cluster.name}' serves ${host}; add it to one of its kubeletProvider grants`,
  );
}
