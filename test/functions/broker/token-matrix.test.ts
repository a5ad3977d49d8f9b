/**
 * Every token a broker must refuse, through the FC handler, with the emulator as Alibaba Cloud:
 * a refused token must never cause an upstream call (the emulator's request log stays empty).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { b64, createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp, type FcHandler } from "./support/invoke.ts";
import type { RefusalReason } from "../../../shared/errors.ts";

let rsa: TestCluster;
let ec: TestCluster;
let remote: TestCluster;
let jwksServer: Server;
let jwksFetches = 0;
let env: BrokerEnv;
let handler: FcHandler;

beforeAll(async () => {
  [rsa, ec, remote] = await Promise.all([
    createTestCluster("rsa"),
    createTestCluster("ec", { alg: "ES256" }),
    createTestCluster("remote", { issuer: "http://127.0.0.1/remote" }),
  ]);
  jwksServer = createServer((_req, res) => {
    jwksFetches++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(remote.jwks));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, "127.0.0.1", resolve));
  const jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;
  const registries = [{ regionId: "cn-beijing" }];
  env = await startBrokerEnv({
    config: { maxTokenLifetimeSeconds: 3600 },
    clusters: () => [
      { name: "rsa", key: rsa, registries },
      { name: "ec", key: ec, registries },
      { name: "remote", key: remote, jwksUri, registries },
    ],
  });
  handler = (event, context) => env.handler(event, { ...env.context(), ...context });
});

afterAll(async () => {
  await new Promise<void>((resolve) => jwksServer.close(() => resolve()));
  await env.close();
});

const upstreamCalls = () => env.emulator.log.count();

/** Sends the token asking for no registries: a valid one gets 200 without any upstream call. */
const ask = (token: string) => invokeHttp(handler, { headers: bearer(token), body: { registries: [] } });

/**
 * Asks a new broker instance (empty cache) for the cluster's registries: had the token been
 * accepted, the broker would have called STS/CR. The refusal's reason is on the request line and
 * nowhere in the answer.
 */
async function expectRefused(token: string, status: 401 | 403, reason: RefusalReason) {
  const before = upstreamCalls();
  const answer = await invokeHttp(env.freshHandler(), { headers: bearer(token), body: {} }, env.context());
  expect(answer.status).toBe(status);
  expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ status, outcome: status === 401 ? "InvalidToken" : "Forbidden", reason });
  expect(Object.keys(answer.json.error as object)).toEqual(["code", "message"]);
  expect(answer.raw.body).not.toContain(reason);
  if (status === 401) expect(answer.headers["www-authenticate"]).toBe('Bearer error="invalid_token"');
  expect(upstreamCalls()).toBe(before);
}

describe("token checks through the handler", () => {
  it("accepts a valid token and then calls the upstream (so a refusal's empty request log means something)", async () => {
    const before = upstreamCalls();
    const answer = await invokeHttp(env.freshHandler(), { headers: bearer(await rsa.mint()), body: {} }, env.context());
    expect(answer.status).toBe(200);
    expect(upstreamCalls()).toBeGreaterThan(before);
  });

  it("accepts a valid RS256 token", async () => {
    const answer = await ask(await rsa.mint());
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({ cluster: "rsa", subject: defaultSubject, credentials: [], errors: [] });
  });

  it("accepts a valid ES256 token", async () => {
    expect((await ask(await ec.mint())).json.cluster).toBe("ec");
  });

  it("rejects an expired token", async () => {
    await expectRefused(await rsa.mint({ now: Date.now() - 3600_000, lifetime: 600 }), 401, "token-expired");
  });

  it("accepts a token expired by less than the clock skew", async () => {
    expect((await ask(await rsa.mint({ now: Date.now() - 630_000, lifetime: 600 }))).status).toBe(200);
  });

  it("rejects a token whose nbf is in the future", async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(await rsa.mint({ claims: { nbf: now + 600, exp: now + 1200 } }), 401, "not-yet-valid");
  });

  it("rejects a token for another audience", async () => {
    await expectRefused(await rsa.mint({ claims: { aud: ["https://kubernetes.default.svc"] } }), 401, "audience-mismatch");
  });

  it("rejects a token whose issuer is not a configured cluster", async () => {
    await expectRefused(await rsa.mint({ claims: { iss: "https://oidc.unknown.example.test" } }), 401, "issuer-unknown");
  });

  it("rejects a token whose kid matches none of the cluster's keys", async () => {
    await expectRefused(await rsa.mint({ header: { kid: "rotated-away" } }), 401, "key-not-found");
  });

  it("rejects alg: none", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = `${b64({ alg: "none", typ: "JWT" })}.${b64({ iss: rsa.issuer, aud: "acr-credential-broker", sub: defaultSubject, iat: now, exp: now + 600 })}.`;
    await expectRefused(token, 401, "algorithm-not-allowed");
  });

  it("rejects a token signed with HS256 using the cluster's public key", async () => {
    const secret = new TextEncoder().encode(JSON.stringify(rsa.publicJwk));
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ sub: defaultSubject, aud: "acr-credential-broker" })
      .setProtectedHeader({ alg: "HS256", kid: rsa.kid })
      .setIssuer(rsa.issuer)
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(secret);
    await expectRefused(token, 401, "algorithm-not-allowed");
  });

  it("rejects a token whose payload was changed after signing", async () => {
    const [header, , signature] = (await rsa.mint()).split(".");
    const now = Math.floor(Date.now() / 1000);
    const forged = `${header}.${b64({ iss: rsa.issuer, aud: ["acr-credential-broker"], sub: "system:serviceaccount:kube-system:admin", iat: now, exp: now + 600 })}.${signature}`;
    await expectRefused(forged, 401, "signature-invalid");
  });

  it("rejects an oversized token before parsing it", async () => {
    await expectRefused(await rsa.mint({ claims: { padding: "x".repeat(20_000) } }), 401, "token-too-large");
  });

  it("rejects a valid token of a ServiceAccount that is not allowed (403)", async () => {
    await expectRefused(await rsa.mint({ claims: { sub: "system:serviceaccount:default:default" } }), 403, "subject-not-allowed");
  });

  it("rejects a token living longer than maxTokenLifetimeSeconds", async () => {
    await expectRefused(await rsa.mint({ lifetime: 7200 }), 401, "lifetime-too-long");
  });

  it("rejects a token signed with cluster A's key claiming cluster B's issuer", async () => {
    await expectRefused(await rsa.mint({ claims: { iss: ec.issuer }, header: { kid: ec.kid } }), 401, "key-not-found");
    await expectRefused(await ec.mint({ claims: { iss: rsa.issuer }, header: { kid: rsa.kid } }), 401, "key-not-found");
    // Same algorithm, the other cluster's kid: only the signature gives it away.
    await expectRefused(await rsa.mint({ claims: { iss: remote.issuer }, header: { kid: remote.kid } }), 401, "signature-invalid");
  });

  it("rejects a token without exp", async () => {
    await expectRefused(await rsa.mint({ omit: ["exp"] }), 401, "claim-invalid");
  });

  it("rejects a token issued in the future", async () => {
    const now = Math.floor(Date.now() / 1000);
    await expectRefused(await rsa.mint({ claims: { iat: now + 3000, nbf: now - 10, exp: now + 3500 } }), 401, "issued-in-future");
  });

  it("rejects a request without a Bearer token", async () => {
    const answer = await invokeHttp(handler, { body: {} });
    expect(answer.status).toBe(401);
    expect(answer.headers["www-authenticate"]).toBe('Bearer error="invalid_token"');
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "InvalidToken", reason: "bearer-token-missing" });
    expect(answer.raw.body).not.toContain("bearer-token-missing");
  });

  it("rejects garbage that is not a JWT", async () => {
    await expectRefused("not-a-jwt", 401, "token-not-compact-jws");
    await expectRefused("a.b.c", 401, "token-undecodable");
  });

  it("never answers a bad token with a 5xx", async () => {
    const statuses = await Promise.all(
      ["", "x.y.z", `${b64({ alg: "RS256" })}.${b64({ iss: rsa.issuer })}.sig`, `${b64({ alg: "RS256", kid: rsa.kid })}.${b64("[]")}.AAAA`].map(
        async (t) => (await ask(t)).status,
      ),
    );
    for (const status of statuses) expect(status).toBeLessThan(500);
  });
});

describe("keys fetched from a cluster's jwksUri", () => {
  it("verifies a token with keys fetched once and cached", async () => {
    const before = jwksFetches;
    expect((await ask(await remote.mint())).status).toBe(200);
    expect((await ask(await remote.mint())).status).toBe(200);
    expect(jwksFetches - before).toBeLessThanOrEqual(1);
  });

  it("re-fetches on an unknown kid at most once per cooldown (a stream of bad kids cannot hammer the issuer)", async () => {
    await ask(await remote.mint());
    const before = jwksFetches;
    for (let i = 0; i < 5; i++) {
      const answer = await ask(await remote.mint({ header: { kid: `unknown-${i}` } }));
      expect(answer.status).toBe(401);
    }
    expect(jwksFetches - before).toBeLessThanOrEqual(1);
  });
});

describe("request log", () => {
  it("writes one line per request without the token", async () => {
    const token = await rsa.mint();
    const before = env.logs.lines.length;
    await ask(token);
    const lines = env.logs.lines.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ msg: "request", cluster: "rsa", subject: defaultSubject, status: 200, outcome: "ok" });
    expect(typeof lines[0]!.requestId).toBe("string");
    expect(typeof lines[0]!.latencyMs).toBe("number");
    expect(env.logs.text()).not.toContain(token.split(".")[2]);
  });
});
