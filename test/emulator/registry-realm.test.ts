import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeProtectedHeader, importX509, jwtVerify } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRealmSigner, createTokenRealm, type RealmDecision, type RealmSigner, type RegistryGrant } from "../../emulator/registry/index.ts";

const service = "registry.emulator.test";
const issuer = "emulator-dockerauth";
const password = "TESTREALMPASSWORD";
const grantTable = new Map<string, RegistryGrant>();

let dir: string;
let signer: RealmSigner;
let server: Server;
let realmUrl: string;
let now = Date.UTC(2030, 0, 1);
let lookupFails = false;
const decisions: RealmDecision[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acr-realm-test-"));
  signer = await createRealmSigner(join(dir, "signer"));
  grantTable.set(`cr_temp_user:${password}`, {
    subject: "acs:ram::1234567890123456:role/puller",
    expiresAt: now + 3600_000,
    allows: (repository, action) => repository === "demo/hello" && action === "pull",
  });
  const realm = createTokenRealm({
    service,
    issuer,
    signer,
    now: () => now,
    lookup: (username, given) => {
      if (lookupFails) throw new Error(`lookup failed for ${given}`);
      return grantTable.get(`${username}:${given}`);
    },
    onDecision: (entry) => decisions.push(entry),
  });
  server = createServer(realm);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  realmUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/auth`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  if (dir) await rm(dir, { recursive: true, force: true });
});

function basic(username: string, given: string): string {
  return `Basic ${Buffer.from(`${username}:${given}`).toString("base64")}`;
}

async function askToken(query: string, authorization?: string): Promise<Response> {
  return fetch(`${realmUrl}?${query}`, { headers: authorization === undefined ? {} : { authorization } });
}

async function verifyWithCertificate(token: string, certPath: string) {
  const key = await importX509(await readFile(certPath, "utf8"), "ES256");
  return jwtVerify(token, key, { issuer, audience: service });
}

describe("realm signing certificate", () => {
  it("signs ES256 tokens that verify with the public key of the certificate at certPath", async () => {
    const token = await signer.sign({ iss: issuer, aud: service, sub: "s", exp: Math.floor(Date.now() / 1000) + 60 });
    const { payload, protectedHeader } = await verifyWithCertificate(token, signer.certPath);
    expect(protectedHeader.alg).toBe("ES256");
    expect(payload.sub).toBe("s");
  });

  it("carries the signing certificate itself in the x5c header, as docker-registry verifies it", async () => {
    const token = await signer.sign({ sub: "s" });
    const certificate = new X509Certificate(await readFile(signer.certPath));
    expect(decodeProtectedHeader(token).x5c).toEqual([certificate.raw.toString("base64")]);
  });

  it("writes a self-signed certificate valid now, and a key only its owner can read", async () => {
    const certificate = new X509Certificate(await readFile(signer.certPath));
    expect(certificate.verify(certificate.publicKey)).toBe(true);
    expect(Date.parse(certificate.validFrom)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(certificate.validTo)).toBeGreaterThan(Date.now() + 30 * 24 * 3600 * 1000);
    expect((await stat(join(dir, "signer", "realm-signing.key"))).mode & 0o077).toBe(0);
  });

  it("reuses the certificate and key already in the folder", async () => {
    const before = await readFile(signer.certPath, "utf8");
    const again = await createRealmSigner(join(dir, "signer"));
    expect(await readFile(again.certPath, "utf8")).toBe(before);
    await expect(verifyWithCertificate(await again.sign({ iss: issuer, aud: service }), signer.certPath)).resolves.toBeDefined();
  });

  it("replaces a certificate that does not belong to the key beside it", async () => {
    const folder = join(dir, "mismatched");
    const first = await createRealmSigner(folder);
    const other = await createRealmSigner(join(dir, "other"));
    await writeFile(first.certPath, await readFile(other.certPath));
    const repaired = await createRealmSigner(folder);
    const certificate = await readFile(repaired.certPath, "utf8");
    expect(certificate).not.toBe(await readFile(other.certPath, "utf8"));
    await expect(verifyWithCertificate(await repaired.sign({ iss: issuer, aud: service }), repaired.certPath)).resolves.toBeDefined();
  });
});

describe("token realm over HTTP", () => {
  it("answers valid credentials with a signed token limited to what the grant allows", async () => {
    const response = await askToken(
      `service=${service}&scope=repository:demo/hello:pull,push&scope=repository:other/app:pull`,
      basic("cr_temp_user", password),
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("application/json");
    expect(response.headers.get("cache-control")).toBe("no-store");
    const body = (await response.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    expect(body.access_token).toBe(body.token);
    expect(body.expires_in).toBe(300);
    expect(Math.abs(Date.parse(body.issued_at) - Date.now())).toBeLessThan(60_000);
    const { payload } = await verifyWithCertificate(body.token, signer.certPath);
    expect(payload).toMatchObject({
      iss: issuer,
      aud: service,
      sub: "acs:ram::1234567890123456:role/puller",
      access: [
        { type: "repository", name: "demo/hello", actions: ["pull"] },
        { type: "repository", name: "other/app", actions: [] },
      ],
    });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(payload.nbf).toBe(payload.iat);
  });

  it("dates the token with the wall clock, whatever the emulator's clock says", async () => {
    const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", password));
    const { payload } = await verifyWithCertificate(((await response.json()) as { token: string }).token, signer.certPath);
    expect(Math.abs(payload.iat! * 1000 - Date.now())).toBeLessThan(60_000);
  });

  it("gives every token its own id", async () => {
    const ids = new Set<unknown>();
    for (let i = 0; i < 3; i += 1) {
      const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", password));
      ids.add((await verifyWithCertificate(((await response.json()) as { token: string }).token, signer.certPath)).payload.jti);
    }
    expect(ids.size).toBe(3);
  });

  it("refuses a wrong password with a Basic challenge and a JSON error, and no token", async () => {
    const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", "TESTWRONG"));
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe(`Basic realm="${service}"`);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toEqual({ errors: [{ code: "UNAUTHORIZED", message: "authentication required", detail: "invalid username or password" }] });
  });

  it("refuses a request with neither credentials nor scope", async () => {
    const response = await askToken(`service=${service}`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toMatch(/^Basic realm=/);
  });

  it("refuses a credential once the emulator's clock passes its expiry", async () => {
    const saved = now;
    now += 3600_000;
    try {
      const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", password));
      expect(response.status).toBe(401);
      expect(((await response.json()) as { errors: { detail: string }[] }).errors[0]?.detail).toMatch(/expired/);
    } finally {
      now = saved;
    }
  });

  it("answers 400 without a service and for a service it does not serve", async () => {
    expect((await askToken(`scope=repository:demo/hello:pull`, basic("cr_temp_user", password))).status).toBe(400);
    expect((await askToken(`service=registry.elsewhere.test&scope=repository:demo/hello:pull`, basic("cr_temp_user", password))).status).toBe(400);
  });

  it("answers 405 to anything but GET", async () => {
    const response = await fetch(`${realmUrl}?service=${service}`, { method: "POST", headers: { authorization: basic("cr_temp_user", password) } });
    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET");
  });

  it("fails closed with a 500 and no token when the credential lookup throws, without echoing its error", async () => {
    lookupFails = true;
    decisions.length = 0;
    try {
      const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", password));
      expect(response.status).toBe(500);
      const text = await response.text();
      expect(text).not.toContain(password);
      expect(text).not.toContain('token"');
      expect(decisions).toEqual([{ subject: "", scope: "", outcome: "lookup-failed", status: 500 }]);
    } finally {
      lookupFails = false;
    }
  });

  it("answers 500 and reports no grant when signing fails (a signer that always fails, as no real one can on demand)", async () => {
    const seen: RealmDecision[] = [];
    const failing = createTokenRealm({
      service,
      issuer,
      signer: { certPath: signer.certPath, sign: () => Promise.reject(new Error("signing key unavailable")) },
      now: () => now,
      lookup: (username, given) => grantTable.get(`${username}:${given}`),
      onDecision: (entry) => seen.push(entry),
    });
    const failingServer = createServer(failing);
    await new Promise<void>((resolve) => failingServer.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(failingServer.address() as AddressInfo).port}/auth?service=${service}&scope=repository:demo/hello:pull`;
      const response = await fetch(url, { headers: { authorization: basic("cr_temp_user", password) } });
      expect(response.status).toBe(500);
      expect(await response.json()).toEqual({ errors: [{ code: "UNKNOWN", message: "unknown error", detail: "the realm could not sign the token" }] });
      expect(seen).toEqual([{ subject: "acs:ram::1234567890123456:role/puller", scope: "", outcome: "signing-failed", status: 500 }]);
    } finally {
      await new Promise<void>((resolve) => failingServer.close(() => resolve()));
    }
  });

  it("reports each decision without the password or the token", async () => {
    decisions.length = 0;
    const response = await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", password));
    const { token } = (await response.json()) as { token: string };
    await askToken(`service=${service}&scope=repository:demo/hello:pull`, basic("cr_temp_user", "TESTWRONG"));
    expect(decisions).toEqual([
      { subject: "acs:ram::1234567890123456:role/puller", scope: "repository:demo/hello:pull", outcome: "granted:pull", status: 200 },
      { subject: "", scope: "repository:demo/hello:pull", outcome: "invalid-credentials", status: 401 },
    ]);
    const logged = JSON.stringify(decisions);
    expect(logged).not.toContain(password);
    expect(logged).not.toContain(token);
  });
});
