import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isAcrCredentialError } from "../../shared/errors.ts";
import { findExecutable } from "../../emulator/registry/docker-registry.ts";
import {
  createRealmSigner,
  createTokenRealm,
  dockerRegistryAvailable,
  startDockerRegistry,
  type RealmDecision,
  type RealmSigner,
  type RegistryGrant,
  type RunningDockerRegistry,
} from "../../emulator/registry/index.ts";
import { writeOciLayout } from "../../emulator/registry/oci-layout.ts";
import { skopeoIn, type SkopeoResult } from "../../emulator/registry/skopeo.ts";

// A real docker-registry (token auth) and real skopeo against the realm; nothing is mocked.
const missingTools = [...(dockerRegistryAvailable() ? [] : ["docker-registry"]), ...(findExecutable("skopeo") === undefined ? ["skopeo"] : [])];
const skipped = missingTools.length > 0 && process.env.CI !== "true";
if (skipped)
  console.log(`skipping test/emulator/registry.test.ts: ${missingTools.join(" and ")} not installed (install the Debian packages; required when CI=true)`);

const service = "registry.emulator.test";
const issuer = "emulator-dockerauth";
const t0 = Date.UTC(2030, 0, 1);

/** The realm's input: which username/password pair stands for which grant. */
const grants = {
  pusher: {
    password: "TESTPUSHPASSWORD:9f2c",
    grant: { subject: "acs:ram::1234567890123456:role/ci-pusher", expiresAt: t0 + 3600_000, allows: (repository: string) => repository.startsWith("demo/") },
  },
  puller: {
    password: "TESTPULLPASSWORD:41d7",
    grant: {
      subject: "acs:ram::1234567890123456:role/cluster-puller",
      expiresAt: t0 + 1800_000,
      allows: (repository: string, action: string) => repository === "demo/hello" && action === "pull",
    },
  },
} satisfies Record<string, { password: string; grant: RegistryGrant }>;

let now = t0;
const decisions: RealmDecision[] = [];
let work: string;
let signer: RealmSigner;
let realmServer: Server;
let realmUrl: string;
let registry: RunningDockerRegistry;
let pushedDigest: string;
let pushResult: SkopeoResult;
let skopeo: (args: string[]) => Promise<SkopeoResult>;
let pushedDigestFile: string;

function lookup(username: string, password: string): RegistryGrant | undefined {
  for (const [name, entry] of Object.entries(grants)) if (name === username && entry.password === password) return entry.grant;
  return undefined;
}

/** A docker config file for one registry, the same format the refresher writes into Secrets. */
async function authFile(name: string, username: string, password: string): Promise<string> {
  const path = join(work, `${name}.auth.json`);
  await writeFile(path, JSON.stringify({ auths: { [registry.host]: { auth: Buffer.from(`${username}:${password}`).toString("base64") } } }), { mode: 0o600 });
  return path;
}

function image(repository: string, tag: string): string {
  return `docker://${registry.host}/${repository}:${tag}`;
}

function decisionsSince(mark: number): RealmDecision[] {
  return decisions.slice(mark);
}

describe.skipIf(skipped)("docker-registry behind the emulator's token realm, used by skopeo", () => {
  beforeAll(async () => {
    if (missingTools.length > 0) throw new Error(`${missingTools.join(" and ")} not installed; CI needs the Debian packages docker-registry and skopeo`);
    work = await mkdtemp(join(tmpdir(), "acr-registry-test-"));
    skopeo = await skopeoIn(work);
    signer = await createRealmSigner(join(work, "signer"));
    const realm = createTokenRealm({ service, issuer, signer, now: () => now, lookup, onDecision: (entry) => decisions.push(entry) });
    realmServer = createServer((req, res) => {
      if (new URL(req.url ?? "/", "http://realm.invalid").pathname === "/auth") realm(req, res);
      else res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => realmServer.listen(0, "127.0.0.1", resolve));
    // A plain-http realm on loopback: docker-registry only echoes it in its challenge, and skopeo
    // fetches the token from whatever URL the challenge names, so no TLS is needed anywhere.
    realmUrl = `http://127.0.0.1:${(realmServer.address() as AddressInfo).port}/auth`;
    registry = await startDockerRegistry({ realm: realmUrl, service, issuer, rootCertBundle: signer.certPath, dataDir: join(work, "registry-data") });

    const layout = join(work, "layout");
    pushedDigest = (await writeOciLayout(layout, { tag: "v1", content: "hello from the emulator registry\n" })).manifestDigest;
    await writeOciLayout(layout, { tag: "v2", content: "a second image\n" });
    pushedDigestFile = join(work, "pushed.digest");
    const dest = ["--dest-tls-verify=false", "--dest-creds", `pusher:${grants.pusher.password}`];
    pushResult = await skopeo(["copy", "--digestfile", pushedDigestFile, ...dest, `oci:${layout}:v1`, image("demo/hello", "v1")]);
    const other = await skopeo(["copy", ...dest, `oci:${layout}:v1`, image("demo/other", "v1")]);
    if (other.code !== 0) throw new Error(`setup push of demo/other failed: ${other.stderr}`);
  });

  afterAll(async () => {
    await registry?.close();
    await new Promise<void>((resolve) => (realmServer ? realmServer.close(() => resolve()) : resolve()));
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("challenges clients to fetch a token from the plain-http realm", async () => {
    const response = await fetch(`http://${registry.host}/v2/`);
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toBe(`Bearer realm="${realmUrl}",service="${service}"`);
  });

  it("accepts a push with a credential that allows push, under the digest of the pushed manifest", async () => {
    expect(pushResult.stderr).toBe("");
    expect(pushResult.code).toBe(0);
    expect((await readFile(pushedDigestFile, "utf8")).trim()).toBe(pushedDigest);
    expect(decisions).toContainEqual({
      subject: grants.pusher.grant.subject,
      scope: "repository:demo/hello:pull,push",
      outcome: "granted:pull,push",
      status: 200,
    });
  });

  it("lets skopeo inspect the image with a pull-only credential from a docker config file", async () => {
    const result = await skopeo([
      "inspect",
      "--tls-verify=false",
      "--authfile",
      await authFile("puller", "puller", grants.puller.password),
      image("demo/hello", "v1"),
    ]);
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as { Digest: string }).Digest).toBe(pushedDigest);
  });

  it("lets skopeo copy the image to a local OCI layout with a pull-only credential", async () => {
    const target = join(work, "pulled");
    const result = await skopeo([
      "copy",
      "--src-tls-verify=false",
      "--src-creds",
      `puller:${grants.puller.password}`,
      image("demo/hello", "v1"),
      `oci:${target}:pulled`,
    ]);
    expect(result.code).toBe(0);
    const index = JSON.parse(await readFile(join(target, "index.json"), "utf8")) as { manifests: { digest: string }[] };
    expect(index.manifests.map((entry) => entry.digest)).toEqual([pushedDigest]);
  });

  it("refuses a pull with a wrong password", async () => {
    const mark = decisions.length;
    const result = await skopeo(["inspect", "--tls-verify=false", "--creds", "puller:TESTWRONGPASSWORD", image("demo/hello", "v1")]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/invalid username\/password/);
    expect(decisionsSince(mark)).toContainEqual({ subject: "", scope: "repository:demo/hello:pull", outcome: "invalid-credentials", status: 401 });
  });

  it("refuses a pull once the credential has expired on the emulator's clock", async () => {
    const mark = decisions.length;
    now = grants.puller.grant.expiresAt;
    try {
      const result = await skopeo(["inspect", "--tls-verify=false", "--creds", `puller:${grants.puller.password}`, image("demo/hello", "v1")]);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toMatch(/unable to retrieve auth token/);
      expect(decisionsSince(mark)).toContainEqual({
        subject: grants.puller.grant.subject,
        scope: "repository:demo/hello:pull",
        outcome: "expired",
        status: 401,
      });
    } finally {
      now = t0;
    }
  });

  it("refuses a pull from an existing repository the credential does not cover", async () => {
    const allowed = await skopeo(["inspect", "--tls-verify=false", "--creds", `pusher:${grants.pusher.password}`, image("demo/other", "v1")]);
    expect(allowed.code).toBe(0);
    const mark = decisions.length;
    const result = await skopeo(["inspect", "--tls-verify=false", "--creds", `puller:${grants.puller.password}`, image("demo/other", "v1")]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/requested access to the resource is denied/);
    expect(decisionsSince(mark)).toContainEqual({ subject: grants.puller.grant.subject, scope: "repository:demo/other:pull", outcome: "denied", status: 200 });
  });

  it("refuses a push with a pull-only credential and stores nothing", async () => {
    const mark = decisions.length;
    const result = await skopeo([
      "copy",
      "--dest-tls-verify=false",
      "--dest-creds",
      `puller:${grants.puller.password}`,
      `oci:${join(work, "layout")}:v2`,
      image("demo/hello", "v2"),
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/requested access to the resource is denied/);
    expect(decisionsSince(mark)).toContainEqual({
      subject: grants.puller.grant.subject,
      scope: "repository:demo/hello:pull,push",
      outcome: "granted:pull",
      status: 200,
    });
    const check = await skopeo(["inspect", "--tls-verify=false", "--creds", `pusher:${grants.pusher.password}`, image("demo/hello", "v2")]);
    expect(check.code).not.toBe(0);
    expect(check.stderr).toMatch(/manifest unknown/);
  });

  it("refuses a token signed by a key outside its rootcertbundle", async () => {
    const stranger = await createRealmSigner(join(work, "stranger"));
    const token = await stranger.sign(validClaims({ aud: service }));
    const response = await fetch(`http://${registry.host}/v2/demo/hello/tags/list`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(401);
    expect(response.headers.get("www-authenticate")).toContain('error="invalid_token"');
  });

  it("refuses a token issued for another service, and accepts the same token for its own", async () => {
    const url = `http://${registry.host}/v2/demo/hello/tags/list`;
    const foreign = await fetch(url, { headers: { authorization: `Bearer ${await signer.sign(validClaims({ aud: "registry.elsewhere.test" }))}` } });
    expect(foreign.status).toBe(401);
    const own = await fetch(url, { headers: { authorization: `Bearer ${await signer.sign(validClaims({ aud: service }))}` } });
    expect(own.status).toBe(200);
    expect(((await own.json()) as { tags: string[] }).tags).toContain("v1");
  });

  it("stops the registry on close", async () => {
    const second = await startDockerRegistry({ realm: realmUrl, service, issuer, rootCertBundle: signer.certPath, dataDir: join(work, "second-data") });
    expect((await fetch(`http://${second.host}/v2/`)).status).toBe(401);
    await second.close();
    await expect(fetch(`http://${second.host}/v2/`)).rejects.toThrow();
  });

  it("reports a registry that cannot start as RegistryUnavailable, with its reason", async () => {
    const started = startDockerRegistry({
      realm: realmUrl,
      service,
      issuer,
      rootCertBundle: join(work, "no-such-bundle.pem"),
      dataDir: join(work, "broken-data"),
    });
    const error: unknown = await started.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(isAcrCredentialError(error) && error.code).toBe("RegistryUnavailable");
    expect((error as Error).message).toContain("no-such-bundle.pem");
  });
});

function validClaims(overrides: { aud: string }): object {
  const issuedAt = Math.floor(Date.now() / 1000);
  return {
    iss: issuer,
    sub: "test",
    exp: issuedAt + 60,
    nbf: issuedAt,
    iat: issuedAt,
    jti: `t${issuedAt}`,
    access: [{ type: "repository", name: "demo/hello", actions: ["pull"] }],
    ...overrides,
  };
}
