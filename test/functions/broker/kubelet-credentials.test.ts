/**
 * `POST /v1/kubelet-credentials` end to end through the FC handler (and once through the HTTP server
 * of `acr-credential broker` and the custom runtime): grants by ServiceAccount pattern, the role
 * annotation limited to a configured list, the provider's own audience, the kubelet's response format
 * with its cache duration, and the shared cache (many pods, one upstream call). Upstream calls are
 * counted on the emulator's request log.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { serveHttp } from "../../../functions/broker/server.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp } from "./support/invoke.ts";
import { brokerUser, instances, roles } from "./support/world.ts";

const kubeletAudience = "acr-credential-broker-kubelet";
const platformHost = instances.platform.domains[0]!;
const tenantHost = "tenant-registry.cn-shanghai.cr.aliyuncs.com";
const roleAnnotation = "acr-credential-broker/role-arn";

const sa = (namespace: string, name: string) => `system:serviceaccount:${namespace}:${name}`;

describe("POST /v1/kubelet-credentials", () => {
  let env: BrokerEnv;
  let prod: TestCluster;
  let bare: TestCluster;
  let own: TestCluster;

  beforeAll(async () => {
    prod = await createTestCluster("prod");
    bare = await createTestCluster("bare");
    own = await createTestCluster("own");
    env = await startBrokerEnv({
      frozenClock: true,
      clusters: () => [
        {
          name: "prod",
          key: prod,
          registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 3600 }],
          kubeletProvider: {
            grants: [
              {
                serviceAccounts: [sa("shop", "*"), sa("ci", "builder")],
                registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 3600 }],
                annotationRoles: [],
              },
              {
                serviceAccounts: [sa("team-*", "puller")],
                registries: [{ instanceId: "cri-tenant", regionId: "cn-shanghai", domains: [tenantHost] }],
                annotationRoles: [roles.tenantPull],
              },
            ],
          },
        },
        { name: "bare", key: bare },
        {
          name: "own",
          key: own,
          kubeletProvider: {
            audience: "own-kubelet",
            grants: [{ serviceAccounts: [sa("shop", "*")], registries: [{ regionId: "cn-beijing" }], annotationRoles: [] }],
          },
        },
      ],
    });
  });
  afterAll(() => env.close());
  afterEach(() => env.emulator.log.clear());

  async function ask(cluster: TestCluster, subject: string, body: unknown, options: { audience?: string; handler?: BrokerEnv["handler"] } = {}) {
    const token = await cluster.mint({ now: env.clock.now(), claims: { sub: subject, aud: [options.audience ?? kubeletAudience] } });
    return invokeHttp(options.handler ?? env.handler, { path: "/v1/kubelet-credentials", headers: bearer(token), body }, env.context());
  }

  it("answers a granted ServiceAccount with the kubelet's CredentialProviderResponse for the registry's domains", async () => {
    const answer = await ask(prod, sa("shop", "web"), { image: `${platformHost}/apps/web:1`, serviceAccountAnnotations: {} });
    expect(answer.status).toBe(200);
    const auth = answer.json.auth as Record<string, { username: string; password: string }>;
    expect(Object.keys(auth).sort()).toEqual([...instances.platform.domains].sort());
    expect(auth[platformHost]).toEqual({ username: expect.any(String), password: expect.any(String) });
    expect(answer.json).toMatchObject({ apiVersion: "credentialprovider.kubelet.k8s.io/v1", kind: "CredentialProviderResponse", cacheKeyType: "Registry" });
    // The password came from the configured role, through the emulator.
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" }).map((e) => e.resource)).toEqual([roles.acrPull]);
  });

  it("logs one line for the request with cluster and ServiceAccount, never the token or the password", async () => {
    const token = await prod.mint({ now: env.clock.now(), claims: { sub: sa("shop", "logged"), aud: [kubeletAudience] } });
    const answer = await invokeHttp(
      env.handler,
      { path: "/v1/kubelet-credentials", headers: bearer(token), body: { image: `${platformHost}/apps/web:1` } },
      env.context(),
    );
    const password = (answer.json.auth as Record<string, { password: string }>)[platformHost]!.password;
    const line = env.logs.lines.find((l) => l.includes(sa("shop", "logged")));
    expect(line).toContain('"cluster":"prod"');
    expect(env.logs.text()).not.toContain(password);
    expect(env.logs.text()).not.toContain(token.split(".")[2]);
  });

  it("sets cacheDuration to end the refresh margin before the credential expires", async () => {
    const answer = await ask(prod, sa("ci", "builder"), { image: `${platformHost}/apps/web:1` });
    // The same cached credential as the refresher's API reports it, with its expiry.
    const refresher = await invokeHttp(
      env.handler,
      {
        headers: bearer(await prod.mint({ now: env.clock.now() })),
        body: { registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }] },
      },
      env.context(),
    );
    const [credential] = (refresher.json as unknown as CredentialsResponse).credentials;
    expect(credential!.password).toBe((answer.json.auth as Record<string, { password: string }>)[platformHost]!.password);
    const untilExpiry = Math.floor((Date.parse(credential!.expiresAt) - env.clock.now()) / 1000);
    // The default margin (refreshBeforeExpirySeconds) is 900 s; the clock is frozen.
    expect(answer.json.cacheDuration).toBe(`${untilExpiry - 900}s`);
    expect(untilExpiry - 900).toBeGreaterThan(2600);
  });

  it("serves a thousand pods' ServiceAccounts of a grant from one upstream credential", async () => {
    const fresh = env.freshHandler();
    const answers = await Promise.all(
      Array.from({ length: 1000 }, (_, i) => ask(prod, sa("shop", `app-${i % 50}`), { image: `${platformHost}/apps/web:${i}` }, { handler: fresh })),
    );
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(new Set(answers.map((a) => (a.json.auth as Record<string, { password: string }>)[platformHost]!.password)).size).toBe(1);
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" })).toHaveLength(1);
    expect(env.emulator.log.filter({ api: "cr:GetAuthorizationToken" })).toHaveLength(1);
  });

  it("refuses a ServiceAccount that no grant names, before any upstream call", async () => {
    const answer = await ask(prod, sa("kube-system", "default"), { image: `${platformHost}/apps/web:1` });
    expect(answer.status).toBe(403);
    expect(answer.json.error).toEqual({ code: "Forbidden", message: expect.stringContaining("system:serviceaccount:kube-system:default") });
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "kubelet-grant-absent" });
    expect(env.emulator.log.entries).toHaveLength(0);
  });

  it("refuses an image on a registry the ServiceAccount's grants do not give it", async () => {
    const answer = await ask(prod, sa("shop", "web"), { image: `${tenantHost}/tenant/app:1` });
    expect(answer.status).toBe(403);
    expect((answer.json.error as { message: string }).message).toContain(tenantHost);
    expect(env.logs.request(answer.headers["x-request-id"])).toMatchObject({ outcome: "Forbidden", reason: "registry-not-granted" });
  });

  it("uses the role the ServiceAccount's annotation names when its grant lists it", async () => {
    const answer = await ask(prod, sa("team-blue", "puller"), {
      image: `${tenantHost}/tenant/app:1`,
      serviceAccountAnnotations: { [roleAnnotation]: roles.tenantPull },
    });
    expect(answer.status).toBe(200);
    expect(Object.keys(answer.json.auth as object)).toEqual([tenantHost]);
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" }).map((e) => e.resource)).toEqual([roles.tenantPull]);
  });

  it("refuses a role the annotation names that its grant does not list: no confused deputy", async () => {
    const answer = await ask(prod, sa("team-blue", "puller"), {
      image: `${tenantHost}/tenant/app:1`,
      serviceAccountAnnotations: { [roleAnnotation]: roles.acrPull },
    });
    expect(answer.status).toBe(403);
    expect((answer.json.error as { message: string }).message).toContain(roles.acrPull);
    expect(env.emulator.log.filter({ api: "sts:AssumeRole" })).toHaveLength(0);
  });

  it("refuses a token for the broker's own audience (a refresher's), and a kubelet token at /v1/credentials", async () => {
    const refresherToken = await ask(prod, sa("shop", "web"), { image: `${platformHost}/apps/web:1` }, { audience: "acr-credential-broker" });
    expect(refresherToken.status).toBe(401);
    const token = await prod.mint({ now: env.clock.now(), claims: { aud: [kubeletAudience] } });
    const reverse = await invokeHttp(env.handler, { headers: bearer(token), body: {} }, env.context());
    expect(reverse.status).toBe(401);
  });

  it("takes a cluster's own kubelet audience instead of the broker-wide one", async () => {
    expect((await ask(own, sa("shop", "web"), { image: "registry.cn-beijing.aliyuncs.com/team/tool:1" }, { audience: "own-kubelet" })).status).toBe(200);
    expect((await ask(own, sa("shop", "web"), { image: "registry.cn-beijing.aliyuncs.com/team/tool:1" })).status).toBe(401);
  });

  it("refuses every ServiceAccount of a cluster without kubeletProvider", async () => {
    const answer = await ask(bare, sa("shop", "web"), { image: `${platformHost}/apps/web:1` });
    expect(answer.status).toBe(403);
    expect((answer.json.error as { message: string }).message).toContain("no kubeletProvider");
  });

  it("refuses a body without image, naming the field", async () => {
    const answer = await ask(prod, sa("shop", "web"), { serviceAccountAnnotations: {} });
    expect(answer.status).toBe(400);
    expect((answer.json.error as { message: string }).message).toMatch(/image/);
  });

  it("answers a credential it could not renew with cacheDuration 0s, and an expired one not at all", async () => {
    const image = { image: `${platformHost}/apps/web:1` };
    const before = await ask(prod, sa("shop", "web"), image);
    const refresher = await invokeHttp(
      env.handler,
      {
        headers: bearer(await prod.mint({ now: env.clock.now() })),
        body: { registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }] },
      },
      env.context(),
    );
    const expiresAt = Date.parse((refresher.json as unknown as CredentialsResponse).credentials[0]!.expiresAt);
    const password = (answer: { json: Record<string, unknown> }) => (answer.json.auth as Record<string, { password: string }>)[platformHost]!.password;
    try {
      env.emulator.faults.set({ serverErrorRate: 1, apis: ["sts:", "cr:"] });
      env.clock.set(expiresAt - 60_000);
      const stale = await ask(prod, sa("shop", "web"), image);
      expect(stale.status).toBe(200);
      expect(password(stale)).toBe(password(before));
      // The kubelet uses it for this pull and asks again for the next.
      expect(stale.json.cacheDuration).toBe("0s");
      env.clock.set(expiresAt + 1000);
      const expired = await ask(prod, sa("shop", "web"), image);
      expect([502, 503]).toContain(expired.status);
      expect(JSON.stringify(expired.json)).not.toContain(password(before));
    } finally {
      env.emulator.faults.clear();
    }
  });

  it("answers the same through the HTTP server", async () => {
    const server = await serveHttp(env.runtime, { port: 0, baseIdentity: { kind: "keys", keys: brokerUser } });
    try {
      const token = await prod.mint({ now: env.clock.now(), claims: { sub: sa("shop", "web"), aud: [kubeletAudience] } });
      const response = await fetch(`${server.url}/v1/kubelet-credentials`, {
        method: "POST",
        headers: { ...bearer(token), "content-type": "application/json" },
        body: JSON.stringify({ image: `${platformHost}/apps/web:1` }),
      });
      expect(response.status).toBe(200);
      expect(((await response.json()) as { auth: Record<string, unknown> }).auth[platformHost]).toBeDefined();
      const wrongMethod = await fetch(`${server.url}/v1/kubelet-credentials`);
      expect(wrongMethod.status).toBe(405);
    } finally {
      await server.close();
    }
  });
});
