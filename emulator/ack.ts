/**
 * ACK (CS 2015-12-15): `DescribeClusterDetail` over the clusters of the world, with ACK's errors
 * (a cluster of another account is not found, a caller without `cs:DescribeClusterDetail` is
 * forbidden), and an OIDC issuer per cluster with RRSA on: discovery and JWKS at
 * `<emulator>/oidc-ack-<region>/<clusterId>`, keys generated on first use, tokens signed on demand.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { ApiError } from "./api-error.ts";
import { isAllowed, type Principal } from "./ram/principal.ts";
import type { RequestLog } from "./request-log.ts";
import type { Account, AckCluster, World } from "./world.ts";

export const clusterResource = (cluster: AckCluster, account: Account) => `acs:cs:${cluster.region}:${account.id}:cluster/${cluster.id}`;

/** The path the emulator hosts a cluster's issuer at; `{regionId}`/`{clusterId}` form for the broker's `ackIssuer`. */
export const hostedIssuerPath = (region: string, clusterId: string) => `/oidc-ack-${region}/${clusterId}`;

export interface ClusterClaims {
  sub?: string;
  aud?: string | string[];
  expiresIn?: number;
}

export interface Ack {
  describeClusterDetail(caller: Principal, clusterId: string): object;
  /** The issuer URL of a cluster's RRSA tokens. */
  issuerOf(clusterId: string): string;
  /** A ServiceAccount token of the cluster, signed with its (emulated) service-account key. */
  sign(clusterId: string, claims?: ClusterClaims): Promise<string>;
  /** Serves `/oidc-ack-…` (discovery and JWKS); false when the path is not one. */
  serveIssuer(req: IncomingMessage, res: ServerResponse, path: string): boolean;
}

interface Signer {
  privateKey: CryptoKey;
  jwk: JWK;
}

export function createAck(deps: { world: World; baseUrl: () => string; log: RequestLog; now: () => number }): Ack {
  const clusters = new Map<string, { account: Account; cluster: AckCluster }>();
  for (const account of deps.world.accounts) for (const cluster of account.ackClusters) clusters.set(cluster.id, { account, cluster });
  const signers = new Map<string, Promise<Signer>>();

  const signerOf = (clusterId: string): Promise<Signer> => {
    let signer = signers.get(clusterId);
    if (!signer) {
      signer = generateKeyPair("RS256").then(async ({ privateKey, publicKey }) => ({
        privateKey,
        jwk: { ...(await exportJWK(publicKey)), kid: `${clusterId}-sa`, alg: "RS256", use: "sig" },
      }));
      signers.set(clusterId, signer);
    }
    return signer;
  };

  const issuerOf = (clusterId: string): string => {
    const found = clusters.get(clusterId);
    if (!found) throw new Error(`no ACK cluster ${clusterId} in the world`);
    return found.cluster.rrsa.issuer ?? `${deps.baseUrl()}${hostedIssuerPath(found.cluster.region, clusterId)}`;
  };

  const notFound = (clusterId: string) => new ApiError(404, "ErrorClusterNotFound", `cluster ${clusterId} not found`);

  return {
    describeClusterDetail(caller, clusterId) {
      const found = clusters.get(clusterId);
      if (!found || found.account.id !== caller.account) throw notFound(clusterId);
      const { account, cluster } = found;
      const resource = clusterResource(cluster, account);
      if (!isAllowed(caller, "cs:DescribeClusterDetail", resource))
        throw new ApiError(403, "StatusForbidden", `Forbidden: cs:DescribeClusterDetail is not allowed on ${resource}.`);
      const issuer = issuerOf(cluster.id);
      return {
        cluster_id: cluster.id,
        name: cluster.name ?? cluster.id,
        region_id: cluster.region,
        state: "running",
        cluster_type: "ManagedKubernetes",
        tags: Object.entries(cluster.tags).map(([key, value]) => ({ key, value })),
        rrsa_config: cluster.rrsa.enabled
          ? {
              enabled: true,
              issuer,
              audience: "sts.aliyuncs.com",
              oidc_name: `ack-rrsa-${cluster.id}`,
              oidc_arn: `acs:ram::${account.id}:oidc-provider/ack-rrsa-${cluster.id}`,
              jwks_url: `${issuer}/keys.json`,
              open_api_configuration_url: `${issuer}/.well-known/openid-configuration`,
            }
          : { enabled: false },
      };
    },

    issuerOf,

    async sign(clusterId, claims = {}) {
      const signer = await signerOf(clusterId);
      const iat = Math.floor(deps.now() / 1000);
      return new SignJWT({})
        .setProtectedHeader({ alg: "RS256", kid: signer.jwk.kid! })
        .setIssuer(issuerOf(clusterId))
        .setSubject(claims.sub ?? "system:serviceaccount:kube-system:acr-credential-refresher")
        .setAudience(claims.aud ?? "acr-credential-broker")
        .setIssuedAt(iat)
        .setExpirationTime(iat + (claims.expiresIn ?? 3600))
        .sign(signer.privateKey);
    },

    serveIssuer(req, res, path) {
      const match = /^\/oidc-ack-([a-z0-9-]+)\/(c[0-9a-z]+)\/(\.well-known\/openid-configuration|keys\.json)$/.exec(path);
      if (!match && !path.startsWith("/oidc-ack-")) return false;
      const [, region, clusterId, document] = match ?? [];
      const found = clusterId === undefined ? undefined : clusters.get(clusterId);
      const api = document === "keys.json" ? "oidc:GetJwks" : "oidc:GetDiscovery";
      const record = (status: number) =>
        deps.log.record({
          at: deps.now(),
          api,
          principal: "anonymous",
          outcome: status === 200 ? "ok" : "NoSuchKey",
          status,
          requestId: "",
          ...(clusterId ? { resource: clusterId } : {}),
        });
      const hosted = found !== undefined && found.cluster.rrsa.enabled && found.cluster.rrsa.issuer === undefined && found.cluster.region === region;
      if (req.method !== "GET" || !hosted) {
        record(404);
        res.writeHead(404, { "content-type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
        return true;
      }
      const issuer = issuerOf(clusterId!);
      void signerOf(clusterId!).then((signer) => {
        const body =
          document === "keys.json"
            ? { keys: [signer.jwk] }
            : {
                issuer,
                jwks_uri: `${issuer}/keys.json`,
                response_types_supported: ["id_token"],
                subject_types_supported: ["public"],
                id_token_signing_alg_values_supported: ["RS256"],
              };
        record(200);
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      });
      return true;
    },
  };
}
