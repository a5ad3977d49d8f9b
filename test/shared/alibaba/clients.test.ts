/** The SDK-backed STS and CR clients against the emulator: real request signing, real responses. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { createAlibabaCloud, type AlibabaCloud } from "../../../shared/alibaba/cloud.ts";
import { identityFromKeys } from "../../../shared/alibaba/identity.ts";
import { upstreamDetails } from "../../../shared/alibaba/upstream-error.ts";
import { createTestCluster, type TestCluster } from "../../functions/broker/support/clusters.ts";
import { brokerUser, brokerWorld, instances, roles, rrsaProvider, strangerUser } from "../../functions/broker/support/world.ts";
import { rejectionOf } from "../../support/errors.ts";

let emulator: Emulator;
let cloud: AlibabaCloud;
let rrsa: TestCluster;
const call = { timeoutMs: 5000 };
const broker = identityFromKeys(brokerUser);

beforeAll(async () => {
  rrsa = await createTestCluster("rrsa", { alg: "ES256" });
  emulator = await startEmulator({ world: brokerWorld(rrsa) });
  cloud = createAlibabaCloud({ stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" });
});

afterAll(() => emulator.close());

describe("STS", () => {
  it("AssumeRole returns an STS session with its expiry", async () => {
    const session = await cloud.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 1800, sessionName: "acr-credential-broker" }, call);
    expect(session.accessKeyId).toMatch(/^STS\./);
    expect(session.securityToken).toBeTruthy();
    expect(session.expiresAt).toBeGreaterThan(Date.now() + 1790_000);
    expect(session.expiresAt).toBeLessThanOrEqual(Date.now() + 1800_000);
  });

  it("AssumeRole signs as an STS session too (role chaining)", async () => {
    const session = await cloud.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "s1" }, call);
    const password = await cloud.getAuthorizationToken(identityFromKeys(session), instances.platform, call);
    expect(password.username).toBe("cr_temp_user");
  });

  it("AssumeRoleWithOIDC exchanges a ServiceAccount token", async () => {
    const oidcToken = await rrsa.mint({ claims: { aud: ["sts.aliyuncs.com"] } });
    const session = await cloud.assumeRoleWithOidc(
      { roleArn: roles.rrsaOwn, oidcProviderArn: rrsaProvider, oidcToken, sessionName: "acr-credential-broker" },
      call,
    );
    expect(session.accessKeyId).toMatch(/^STS\./);
    expect(emulator.log.filter({ api: "sts:AssumeRoleWithOIDC" }).at(-1)!.principal).toBe("anonymous");
  });

  it("a refused AssumeRole is a non-retryable UpstreamError naming the role and the upstream code", async () => {
    const error = await rejectionOf(
      cloud.assumeRole(identityFromKeys(strangerUser), { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "test-session" }, call),
    );
    expect(error.code).toBe("UpstreamError");
    expect(error.message).toMatch(/^STS AssumeRole acs:ram::1000000000000001:role\/acr-pull: refused with 403 NoPermission/);
    expect(upstreamDetails(error)).toMatchObject({ retryable: false, upstreamCode: "NoPermission" });
  });

  it("an OIDC refusal never carries the token in its message", async () => {
    const oidcToken = await rrsa.mint({ claims: { aud: ["somebody-else"] } });
    const error = await rejectionOf(
      cloud.assumeRoleWithOidc({ roleArn: roles.rrsaOwn, oidcProviderArn: rrsaProvider, oidcToken, sessionName: "test-session" }, call),
    );
    expect(error.message).not.toContain(oidcToken);
    expect(error.message).toMatch(/AuthenticationFail/);
  });
});

describe("Container Registry", () => {
  it("GetAuthorizationToken returns the temporary login and its expiry (epoch ms)", async () => {
    const session = await cloud.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "test-session" }, call);
    const password = await cloud.getAuthorizationToken(identityFromKeys(session), instances.platform, call);
    expect(password.password.length).toBeGreaterThan(16);
    expect(password.expiresAt).toBeGreaterThan(Date.now());
  });

  it("ListInstanceEndpoint gives every enabled endpoint's domains", async () => {
    const session = await cloud.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "test-session" }, call);
    expect((await cloud.listInstanceDomains(identityFromKeys(session), instances.platform, call)).sort()).toEqual([...instances.platform.domains].sort());
  });

  it("the Personal Edition GET /tokens parses its string body", async () => {
    const password = await cloud.getPersonalAuthorizationToken(broker, { regionId: "cn-beijing" }, call);
    expect(password).toMatchObject({ username: "cr_temp_user", password: expect.any(String), expiresAt: expect.any(Number) });
  });

  it("replaces {regionId} in the CR endpoint", async () => {
    const [host, port] = emulator.endpoints.cr.split(":");
    const regional = createAlibabaCloud({ stsEndpoint: emulator.endpoints.sts, crEndpoint: `{regionId}.${host}.nip.invalid:${port}`, protocol: "http" });
    const error = await rejectionOf(regional.getPersonalAuthorizationToken(broker, { regionId: "cn-beijing" }, call));
    expect(error.message).toMatch(/cn-beijing/);
    expect(upstreamDetails(error)?.retryable).toBe(true);
  });
});

describe("upstream faults", () => {
  it("classifies throttling as UpstreamThrottled, retryable", async () => {
    emulator.faults.set({ throttleRate: 1, apis: ["cr:"] });
    try {
      const error = await rejectionOf(cloud.getPersonalAuthorizationToken(broker, { regionId: "cn-beijing" }, call));
      expect(error.code).toBe("UpstreamThrottled");
      expect(upstreamDetails(error)?.retryable).toBe(true);
    } finally {
      emulator.faults.clear();
    }
  });

  it("classifies a 5xx as retryable", async () => {
    emulator.faults.set({ serverErrorRate: 1, apis: ["sts:"] });
    try {
      const error = await rejectionOf(cloud.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "test-session" }, call));
      expect(["UpstreamUnavailable", "UpstreamError"]).toContain(error.code);
      expect(upstreamDetails(error)?.retryable).toBe(true);
    } finally {
      emulator.faults.clear();
    }
  });

  it("classifies an answer slower than the call's timeout as UpstreamTimeout, retryable", async () => {
    emulator.faults.set({ latencyMs: 1500, apis: ["cr:"] });
    try {
      const error = await rejectionOf(cloud.getPersonalAuthorizationToken(broker, { regionId: "cn-beijing" }, { timeoutMs: 300 }));
      expect(error.code).toBe("UpstreamTimeout");
      expect(upstreamDetails(error)?.retryable).toBe(true);
    } finally {
      emulator.faults.clear();
    }
  });

  it("classifies a closed port as UpstreamUnavailable, retryable", async () => {
    const closed = createAlibabaCloud({ stsEndpoint: "127.0.0.1:9", crEndpoint: "127.0.0.1:9", protocol: "http" });
    const error = await rejectionOf(closed.assumeRole(broker, { roleArn: roles.acrPull, durationSeconds: 3600, sessionName: "test-session" }, call));
    expect(error.code).toBe("UpstreamUnavailable");
    expect(upstreamDetails(error)?.retryable).toBe(true);
  });
});
