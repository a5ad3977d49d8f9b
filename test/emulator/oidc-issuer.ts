import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from "jose";
import { createCertificateAuthority } from "../../emulator/tls.ts";

/** A test OIDC issuer: keys generated at run time, tokens signed on demand. */
export interface TestIssuer {
  issuer: string;
  jwks: { keys: (JWK & { kty: string })[] };
  sign(
    claims: { sub?: string; aud?: string | string[]; iss?: string; expiresIn?: number; iat?: number; exp?: number },
    options?: { key?: CryptoKey; kid?: string; alg?: string },
  ): Promise<string>;
}

export async function createTestIssuer(issuer: string, kid = "test-key-1"): Promise<TestIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const jwk = { ...(await exportJWK(publicKey)), kty: "RSA", kid, alg: "RS256", use: "sig" };
  return {
    issuer,
    jwks: { keys: [jwk] },
    async sign(claims, options = {}) {
      const now = Math.floor(Date.now() / 1000);
      const iat = claims.iat ?? now;
      return new SignJWT({})
        .setProtectedHeader({ alg: options.alg ?? "RS256", kid: options.kid ?? kid })
        .setIssuer(claims.iss ?? issuer)
        .setSubject(claims.sub ?? "system:serviceaccount:kube-system:acr-helper")
        .setAudience(claims.aud ?? "sts.aliyuncs.com")
        .setIssuedAt(iat)
        .setExpirationTime(claims.exp ?? iat + (claims.expiresIn ?? 3600))
        .sign(options.key ?? privateKey);
    },
  };
}

/** Serves an issuer's discovery document and JWKS over HTTPS with a certificate from its own CA. */
export async function serveIssuerOverHttps(
  path: string,
  issuerFor: (origin: string) => Promise<TestIssuer>,
): Promise<{ issuer: TestIssuer; caPem: string; close(): Promise<void> }> {
  const ca = await createCertificateAuthority("test issuer CA");
  const tls = await ca.issue(["127.0.0.1"]);
  // The issuer's URL holds the port, which is known only once the server listens.
  const served: { issuer?: TestIssuer } = {};
  const server: Server = createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
    const issuer = served.issuer!;
    const base = new URL(issuer.issuer).pathname.replace(/\/$/, "");
    if (req.url === `${base}/.well-known/openid-configuration`) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ issuer: issuer.issuer, jwks_uri: `${issuer.issuer}/keys`, id_token_signing_alg_values_supported: ["RS256"] }));
    } else if (req.url === `${base}/keys`) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(issuer.jwks));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const issuer = await issuerFor(`https://127.0.0.1:${(server.address() as AddressInfo).port}${path}`);
  served.issuer = issuer;
  return {
    issuer,
    caPem: ca.certPem,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
