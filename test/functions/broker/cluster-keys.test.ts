/**
 * Keys fetched from a cluster's issuer like a real Kubernetes API server publishes them: OIDC
 * discovery and a JWKS over HTTPS signed by a private CA (the cluster's `caFile`).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { JWK } from "jose";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createServerTls, type ServerTls } from "../../../emulator/tls.ts";
import { createClusterKeys, type KeySourceOptions } from "../../../functions/broker/cluster-keys.ts";
import { parseConfig, type Cluster } from "../../../functions/broker/config.ts";
import { createTokenVerifier } from "../../../functions/broker/token.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { rejectionOf } from "../../support/errors.ts";

let dir: string;
let tls: ServerTls;
let ca: string;
let server: Server;
let issuer: string;
let signer: TestCluster;
let published: { keys: JWK[] };
let discoveryStatus = 200;
const hits = { discovery: 0, jwks: 0 };

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "broker-keys-"));
  tls = await createServerTls(dir);
  ca = await readFile(tls.caFile, "utf8");
  server = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    if (req.url === "/cluster/.well-known/openid-configuration") {
      hits.discovery++;
      if (discoveryStatus !== 200) return void res.writeHead(discoveryStatus).end();
      return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ issuer, jwks_uri: `${issuer}/openid/v1/jwks` }));
    }
    if (req.url === "/cluster/openid/v1/jwks") {
      hits.jwks++;
      return void res.writeHead(200, { "content-type": "application/jwk-set+json" }).end(JSON.stringify(published));
    }
    if (req.url === "/redirect") return void res.writeHead(302, { location: `${issuer}/openid/v1/jwks` }).end();
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}/cluster`;
  signer = await createTestCluster("discovered", { issuer });
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  published = signer.jwks;
  discoveryStatus = 200;
  hits.discovery = 0;
  hits.jwks = 0;
});

function verifierFor(fields: Record<string, unknown>, options: KeySourceOptions = {}) {
  const config = parseConfig({ audience: "acr-credential-broker", clusters: [{ name: "discovered", issuer, subjects: [defaultSubject], ...fields }] }, "test");
  const cluster: Cluster = config.clusters[0]!;
  return createTokenVerifier({ config, clock: { now: () => Date.now() }, keysFor: () => createClusterKeys(cluster, options) });
}

describe("signing keys of a cluster", () => {
  it("are found by OIDC discovery at the issuer over HTTPS trusting the cluster's CA, once", async () => {
    const verify = verifierFor({}, { ca });
    for (let i = 0; i < 3; i++) expect((await verify(await signer.mint())).cluster.name).toBe("discovered");
    expect(hits).toEqual({ discovery: 1, jwks: 1 });
  });

  it("are fetched from jwksUri without discovery", async () => {
    const verify = verifierFor({ jwksUri: `${issuer}/openid/v1/jwks` }, { ca });
    expect((await verify(await signer.mint())).subject).toBe(defaultSubject);
    expect(hits).toEqual({ discovery: 0, jwks: 1 });
  });

  it("cannot be fetched from an issuer whose certificate is not trusted: 503, not the caller's fault", async () => {
    const error = await rejectionOf(verifierFor({})(await signer.mint()));
    expect(error.code).toBe("UpstreamUnavailable");
    expect(error.message).toMatch(/cannot fetch the signing keys of cluster 'discovered'/);
  });

  it("report a failed discovery as unavailable and do not retry it on every request", async () => {
    discoveryStatus = 500;
    const verify = verifierFor({}, { ca, discoveryRetryMs: 60_000 });
    expect((await rejectionOf(verify(await signer.mint()))).message).toMatch(/answered HTTP 500/);
    expect((await rejectionOf(verify(await signer.mint()))).code).toBe("UpstreamUnavailable");
    expect(hits.discovery).toBe(1);
  });

  it("are not taken from a redirect", async () => {
    const error = await rejectionOf(verifierFor({ jwksUri: `${issuer.replace("/cluster", "")}/redirect` }, { ca })(await signer.mint()));
    expect(error.message).toMatch(/answered HTTP 302/);
    expect(hits.jwks).toBe(0);
  });

  it("follow a key rotation: an unknown kid triggers one re-fetch once the cooldown has passed", async () => {
    const verify = verifierFor({ jwksUri: `${issuer}/openid/v1/jwks` }, { ca, cooldownMs: 0 });
    await verify(await signer.mint());
    const rotated = await createTestCluster("rotated", { issuer });
    published = { keys: [...signer.jwks.keys, ...rotated.jwks.keys] };
    expect((await verify(await rotated.mint())).cluster.name).toBe("discovered");
    expect(hits.jwks).toBe(2);
  });

  it("are never fetched from a URL the token names (jku)", async () => {
    const verify = verifierFor({ jwksUri: `${issuer}/openid/v1/jwks` }, { ca });
    const forged = await createTestCluster("forged", { issuer });
    const error = await rejectionOf(verify(await forged.mint({ header: { jku: `${issuer}/attacker/jwks`, kid: forged.kid } })));
    expect(error.code).toBe("InvalidToken");
    expect(hits.jwks).toBe(1);
  });
});
