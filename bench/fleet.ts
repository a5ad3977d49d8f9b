/**
 * The fleet the benchmarks simulate: clusters with their own issuer and signing key (inline JWKS in
 * the broker configuration), and an Alibaba Cloud world with one broker user (or the function's
 * execution role on Function Compute), one pull role and two Enterprise instances every cluster may
 * pull from (a third for one fleet configuration). Every key is fake and made at run time.
 */
import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { WorldInput } from "../emulator/index.ts";
import type { RegistryRequest } from "../shared/broker-api.ts";

export const platformAccount = "1000000000000001";
export const brokerKey = { accessKeyId: "TESTAKBENCHBROKER01", accessKeySecret: "test-secret-bench-broker-not-real" };
export const pullRole = `acs:ram::${platformAccount}:role/acr-pull`;
/** The broker function's execution role on Function Compute (its credentials arrive in `context.credentials`). */
export const executionRole = `acs:ram::${platformAccount}:role/fc-broker`;
export const audience = "acr-credential-broker";
export const subject = "system:serviceaccount:kube-system:aliyun-acr-credential-helper";

/** The two registries every cluster fetches; no domains configured, so the broker also looks them up. */
export const registries: RegistryRequest[] = [
  { instanceId: "cri-benchone", regionId: "cn-hangzhou", assumeRoleArn: pullRole },
  { instanceId: "cri-benchtwo", regionId: "cn-shanghai", assumeRoleArn: pullRole },
];

/** A third registry behind the same role chain, for one fleet configuration (bench/fleet-bench.ts). */
const thirdRegistry: RegistryRequest = { instanceId: "cri-benchthree", regionId: "cn-beijing", assumeRoleArn: pullRole };

/** The domains the emulator gives an instance of `benchWorld` (its standard internet and VPC endpoints). */
const instanceDomains = (name: string, regionId: string) => [
  `${name}-registry.${regionId}.cr.aliyuncs.com`,
  `${name}-registry-vpc.${regionId}.cr.aliyuncs.com`,
];

/**
 * The registries a fleet configuration's clusters fetch: the two above with their domains discovered,
 * or all three with their domains configured (no ListInstanceEndpoint; the upstream floor alone).
 */
export function fleetRegistries(count: 2 | 3): RegistryRequest[] {
  if (count === 2) return [...registries];
  return [...registries, thirdRegistry].map((r) => ({ ...r, domains: instanceDomains(r.instanceId!.slice("cri-".length), r.regionId!) }));
}

export function benchWorld(): WorldInput {
  return {
    accounts: [
      {
        id: platformAccount,
        name: "platform",
        users: [
          {
            name: "broker",
            accessKeys: [{ id: brokerKey.accessKeyId, secret: brokerKey.accessKeySecret }],
            policies: [{ Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Resource: pullRole }] }],
          },
        ],
        roles: [
          {
            name: "acr-pull",
            trustPolicy: {
              Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { RAM: [`acs:ram::${platformAccount}:user/broker`, executionRole] } }],
            },
            // AliyunACRBasicAccess-like: CR authorises GetAuthorizationToken on all resources, never per instance.
            policies: [
              { Statement: [{ Effect: "Allow", Action: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "cr:PullRepository"], Resource: "*" }] },
            ],
          },
          {
            name: "fc-broker",
            maxSessionDuration: 43200,
            trustPolicy: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { Service: ["fc.aliyuncs.com"] } }] },
            policies: [{ Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Resource: pullRole }] }],
          },
        ],
        instances: [
          { id: "cri-benchone", name: "benchone", region: "cn-hangzhou", repositories: ["apps/web"] },
          { id: "cri-benchtwo", name: "benchtwo", region: "cn-shanghai", repositories: ["apps/api"] },
          { id: "cri-benchthree", name: "benchthree", region: "cn-beijing", repositories: ["apps/jobs"] },
        ],
      },
    ],
  };
}

export interface FleetCluster {
  name: string;
  issuer: string;
  jwks: { keys: JWK[] };
  /** A ServiceAccount token of this cluster for the broker's audience. */
  token: string;
}

/** `count` clusters, each with its own issuer and key pair, and one token each valid for `lifetimeSeconds`. */
export async function createFleet(count: number, options: { alg: "RS256" | "ES256"; lifetimeSeconds?: number; prefix?: string }): Promise<FleetCluster[]> {
  const now = Math.floor(Date.now() / 1000);
  const lifetime = options.lifetimeSeconds ?? 3600;
  return Promise.all(
    Array.from({ length: count }, async (_, index) => {
      const name = `${options.prefix ?? "fleet"}-${String(index).padStart(4, "0")}`;
      const issuer = `https://oidc.bench.example/${name}`;
      const { privateKey, publicKey } = await generateKeyPair(options.alg, { extractable: true });
      const kid = randomUUID();
      const jwk = { ...(await exportJWK(publicKey)), kid, alg: options.alg, use: "sig" };
      const token = await new SignJWT({
        "kubernetes.io": { namespace: "kube-system", serviceaccount: { name: "aliyun-acr-credential-helper", uid: randomUUID() } },
      })
        .setProtectedHeader({ alg: options.alg, kid, typ: "JWT" })
        .setIssuer(issuer)
        .setAudience([audience])
        .setSubject(subject)
        .setIssuedAt(now)
        .setNotBefore(now)
        .setExpirationTime(now + lifetime)
        .sign(privateKey);
      return { name, issuer, jwks: { keys: [jwk] }, token };
    }),
  );
}

/** A broker configuration (docs/broker.md, "Configuration") trusting the fleet, against the emulator's endpoints. */
export function fleetBrokerConfig(
  fleet: readonly FleetCluster[],
  endpoints: { sts: string; cr: string },
  extra: Record<string, unknown> = {},
  clusterRegistries: readonly RegistryRequest[] = registries,
): Record<string, unknown> {
  return {
    audience,
    alibabaCloud: { stsEndpoint: endpoints.sts, crEndpoint: endpoints.cr, protocol: "http" },
    ...extra,
    clusters: fleet.map((cluster) => ({ name: cluster.name, issuer: cluster.issuer, jwks: cluster.jwks, subjects: [subject], registries: clusterRegistries })),
  };
}

/** The body the refresher sends: every configured registry. */
export const credentialsBody = JSON.stringify({ registries });
