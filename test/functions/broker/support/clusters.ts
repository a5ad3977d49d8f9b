import { randomUUID } from "node:crypto";
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload } from "jose";

/** A test Kubernetes cluster: an issuer with its own signing key, minting ServiceAccount tokens. */
export interface TestCluster {
  name: string;
  issuer: string;
  alg: string;
  kid: string;
  privateKey: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
  publicJwk: JWK;
  jwks: { keys: JWK[] };
  /** A token signed by this cluster's key; claims and header fields can be overridden. */
  mint(options?: MintOptions): Promise<string>;
}

export interface MintOptions {
  claims?: JWTPayload;
  header?: Record<string, unknown>;
  /** Seconds; default 600. */
  lifetime?: number;
  /** Epoch ms used for iat/nbf/exp; default now. */
  now?: number;
  /** Leave these registered claims out. */
  omit?: Array<"iat" | "exp" | "nbf" | "sub">;
}

export const defaultAudience = "acr-credential-broker";
export const defaultSubject = "system:serviceaccount:kube-system:aliyun-acr-credential-helper";

export async function createTestCluster(name: string, options: { alg?: "RS256" | "ES256" | "PS256" | "ES384"; issuer?: string } = {}): Promise<TestCluster> {
  const alg = options.alg ?? "RS256";
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const kid = randomUUID();
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: "sig" };
  const issuer = options.issuer ?? `https://oidc.${name}.example.test/c-${name}`;
  return {
    name,
    issuer,
    alg,
    kid,
    privateKey,
    publicJwk,
    jwks: { keys: [publicJwk] },
    async mint(mint: MintOptions = {}) {
      const now = Math.floor((mint.now ?? Date.now()) / 1000);
      const lifetime = mint.lifetime ?? 600;
      const omit = new Set(mint.omit ?? []);
      const claims: JWTPayload = {
        iss: issuer,
        aud: [defaultAudience],
        ...(omit.has("sub") ? {} : { sub: defaultSubject }),
        ...(omit.has("iat") ? {} : { iat: now }),
        ...(omit.has("nbf") ? {} : { nbf: now }),
        ...(omit.has("exp") ? {} : { exp: now + lifetime }),
        "kubernetes.io": { namespace: "kube-system", serviceaccount: { name: "aliyun-acr-credential-helper", uid: randomUUID() } },
        ...mint.claims,
      };
      return new SignJWT(claims).setProtectedHeader({ alg, kid, typ: "JWT", ...mint.header }).sign(privateKey);
    },
  };
}

/** Base64url of a JSON value (for hand-made tokens). */
export const b64 = (value: unknown): string => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");
