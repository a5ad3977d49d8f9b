/**
 * The broker's answer where Alibaba Cloud refuses: the emulator answers as the real services do
 * (an instance-scoped token policy, a Personal Edition identity without a registry password, STS
 * refusing an RRSA token, CR's HTTP 200 with IsSuccess=false, a capped role chain), and the broker
 * says which entry failed, with a stable code and what to change.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { WorldInput } from "../../../emulator/index.ts";
import type { CredentialsResponse } from "../../../shared/broker-api.ts";
import { fcClient } from "../../emulator/clients.ts";
import { startBrokerEnv, type BrokerEnv } from "./support/broker-env.ts";
import { createTestCluster, type TestCluster } from "./support/clusters.ts";
import { bearer, invokeHttp } from "./support/invoke.ts";
import { brokerUser, instances, platform, roles, rrsaProvider } from "./support/world.ts";

type World = WorldInput & { accounts: Array<NonNullable<WorldInput["accounts"]>[number]> };
type Account = World["accounts"][number];

const platformEntry = {
  instanceId: instances.platform.instanceId,
  regionId: instances.platform.regionId,
  domains: instances.platform.domains,
  assumeRoleArn: roles.acrPull,
  expireDuration: 3600,
};
const personalEntry = { regionId: "cn-beijing" };

let env: BrokerEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

/** The world with the platform account changed by `change`. */
const withPlatform = (change: (account: Account) => void) => (world: WorldInput) => {
  const copy = structuredClone(world) as World;
  change(copy.accounts.find((account) => account.id === platform)!);
  return copy;
};

async function start(cluster: TestCluster, registries: object[], options: Parameters<typeof startBrokerEnv>[0] = {}) {
  env = await startBrokerEnv({
    ...options,
    clusters: (rrsa) => [
      { name: "prod", key: cluster, registries: registries as never },
      { name: "rrsa", key: rrsa, allowRrsa: true, registries: [] },
    ],
  });
  return env;
}

async function request(cluster: TestCluster, body: unknown, context = env!.context()) {
  return invokeHttp(env!.handler, { headers: bearer(await cluster.mint({ now: env!.clock.now() })), body }, context);
}

const errorOf = (json: Record<string, unknown>) => json.error as { code: string; message: string };

describe("CR authorises GetAuthorizationToken on all resources", () => {
  it('answers 502 UpstreamError naming Resource "*" when the role\'s policy scopes the token to the instance', async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [platformEntry], {
      world: withPlatform((account) => {
        account.policies!.PullPlatform!.Statement[0] = {
          Effect: "Allow",
          Action: "cr:GetAuthorizationToken",
          Resource: `acs:cr:cn-hangzhou:${platform}:instance/cri-plat`,
        };
      }),
    });
    const answer = await request(prod, {});
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json).code).toBe("UpstreamError");
    expect(errorOf(answer.json).message).toMatch(
      /^CR GetAuthorizationToken cri-plat \(cn-hangzhou\): refused with 403 NoPrivilege: .*cr:GetAuthorizationToken on Resource "\*".*never allows it \(see docs\/deploy\.md\)$/,
    );
    expect(env!.emulator.log.filter({ api: "cr:GetAuthorizationToken" }).map((entry) => entry.outcome)).toEqual(["NoPrivilege"]);
  });
});

describe("Personal Edition before the first registry password", () => {
  it("reports the entry with USER_NOT_EXIST and the console step that fixes it, next to the entries that worked", async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [platformEntry, personalEntry], {
      world: withPlatform((account) => {
        account.users!.find((user) => user.name === "broker")!.registryPasswordSet = false;
      }),
    });
    const answer = await request(prod, {});
    expect(answer.status).toBe(200);
    const body = answer.json as unknown as CredentialsResponse;
    expect(body.credentials.map((credential) => credential.instanceId)).toEqual(["cri-plat"]);
    expect(body.errors).toEqual([
      {
        regionId: "cn-beijing",
        code: "UpstreamError",
        message: expect.stringMatching(
          /Personal Edition, cn-beijing\): refused with 404 USER_NOT_EXIST: user is not exist\.; .*never set a Container Registry Personal Edition password: sign in to the Container Registry console once as that identity and set the registry password/,
        ),
      },
    ]);
    // Not retried: asking again cannot help until someone sets the password.
    expect(env!.emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(1);
  });
});

describe("STS refusing the ServiceAccount's RRSA token", () => {
  const rrsaEntry = { ...platformEntry, domains: undefined, rrsaRoleArn: roles.rrsaOwn, rrsaOidcProviderArn: rrsaProvider };

  async function rrsaRequest(oidcToken: string) {
    const answer = await request(env!.rrsa, { oidcToken, registries: [rrsaEntry] });
    return { answer, oidcToken };
  }

  it("says the OIDC provider does not publish the signing key (AuthenticationFail.OIDCToken.InvalidSignature)", async () => {
    const stranger = await createTestCluster("rotated", { alg: "ES256" });
    const prod = await createTestCluster("prod");
    await start(prod, [], {
      world: withPlatform((account) => {
        account.oidcProviders![0]!.jwks = stranger.jwks as never;
      }),
    });
    const { answer, oidcToken } = await rrsaRequest(await env!.rrsa.mint({ now: env!.clock.now(), claims: { aud: ["sts.aliyuncs.com"] } }));
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json)).toEqual({
      code: "UpstreamError",
      message: expect.stringMatching(
        /AssumeRoleWithOIDC .*refused with 401 AuthenticationFail\.OIDCToken\.InvalidSignature: .*; the RAM OIDC provider does not publish the key that signed the cluster's token/,
      ),
    });
    expect(JSON.stringify(answer.json)).not.toContain(oidcToken);
  });

  it("says to raise the provider's IssuanceLimitTime when the token was issued longer ago", async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [], {
      world: withPlatform((account) => {
        account.oidcProviders![0]!.issuanceLimitTime = 1;
      }),
    });
    // A projected token kubelet has not rotated yet: issued two hours ago, valid for four.
    const oidcToken = await env!.rrsa.mint({ now: env!.clock.now() - 2 * 3600_000, lifetime: 4 * 3600, claims: { aud: ["sts.aliyuncs.com"] } });
    const { answer } = await rrsaRequest(oidcToken);
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json).message).toMatch(
      /refused with 401 AuthenticationFail\.OIDCToken\.Expired: The OIDC token was issued more than 1 hours ago.*; .*raise IssuanceLimitTime above the projected token's expirationSeconds/,
    );
  });
});

describe("CR answering HTTP 200 with IsSuccess: false", () => {
  it("retries a transient code within the request and fails with 502 UpstreamError when it persists", async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [platformEntry]);
    env!.emulator.faults.set({ unsuccessful: { code: "SYSTEM_ERROR", message: "system error" }, apis: ["cr:GetAuthorizationToken"] });
    const answer = await request(prod, {});
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json)).toEqual({
      code: "UpstreamError",
      message: expect.stringMatching(
        /^CR GetAuthorizationToken cri-plat \(cn-hangzhou\): server error 500 SYSTEM_ERROR: system error \(HTTP 200, IsSuccess=false\)$/,
      ),
    });
    // The broker's test backoff allows five attempts.
    expect(env!.emulator.log.filter({ api: "cr:GetAuthorizationToken" }).map((entry) => [entry.status, entry.outcome])).toEqual(
      Array.from({ length: 5 }, () => [200, "SYSTEM_ERROR"]),
    );
  });

  it("hands out the password once a retry succeeds", async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [platformEntry]);
    // Seed 4 answers the first request unsuccessfully and the second one normally.
    env!.emulator.faults.set({ unsuccessful: { code: "SYSTEM_BUSY", rate: 0.5 }, seed: 4, apis: ["cr:GetAuthorizationToken"] });
    const answer = await request(prod, {});
    expect(answer.status).toBe(200);
    expect((answer.json as unknown as CredentialsResponse).credentials).toHaveLength(1);
    expect(env!.emulator.log.filter({ api: "cr:GetAuthorizationToken" }).map((entry) => entry.outcome)).toEqual(["SYSTEM_BUSY", "ok"]);
  });

  it("does not retry a code that says the request itself is wrong, and names what to check", async () => {
    const prod = await createTestCluster("prod");
    await start(prod, [platformEntry]);
    env!.emulator.faults.set({ unsuccessful: { code: "INSTANCE_NOT_EXIST" }, apis: ["cr:GetAuthorizationToken"] });
    const answer = await request(prod, {});
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json).message).toMatch(
      /refused with 404 INSTANCE_NOT_EXIST: IsSuccess=false in an HTTP 200 answer \(HTTP 200, IsSuccess=false\); check the ARN or instance id in the broker configuration$/,
    );
    expect(env!.emulator.log.count({ api: "cr:GetAuthorizationToken" })).toBe(1);
  });
});

describe("a role chain STS caps at an hour", () => {
  /** May invoke the function below, and nothing else. */
  const invoker = { accessKeyId: "TESTAKCHAININVOKER1", accessKeySecret: "test-secret-chain-invoker-not-real" };

  /** The credentials Function Compute hands the broker for its execution role, through a real InvokeFunction. */
  async function executionRoleCredentials(): Promise<{ accessKeyId: string; accessKeySecret: string; securityToken: string }> {
    let captured: { accessKeyId: string; accessKeySecret: string; securityToken: string } | undefined;
    env!.emulator.functions.register(
      "chain",
      "capture",
      async (_event, context) => {
        captured = context.credentials;
        return "ok";
      },
      { role: roles.fcBroker },
    );
    await fcClient(env!.emulator.endpoints.fc, platform, invoker).invokeFunction("chain", "capture", "{}");
    return captured!;
  }

  it("tells the operator to lower expireDuration or give the broker a RAM user's key; the same entry works for a user", async () => {
    const prod = await createTestCluster("prod");
    const longEntry = { ...platformEntry, expireDuration: 7200 };
    await start(prod, [longEntry], {
      world: (world) => {
        const copy = withPlatform((account) => {
          account.roles!.find((role) => role.name === "acr-pull")!.maxSessionDuration = 7200;
          account.users!.push({
            name: "chain-invoker",
            accessKeys: [{ id: invoker.accessKeyId, secret: invoker.accessKeySecret }],
            policies: [{ Statement: [{ Effect: "Allow", Action: "fc:InvokeFunction", Resource: `acs:fc:*:${platform}:services/chain/functions/capture` }] }],
          });
        })(world);
        return { ...copy, sts: { roleChainingMaxDuration: 3600 } };
      },
    });
    const fcRole = await executionRoleCredentials();
    const answer = await request(prod, {}, env!.context(fcRole));
    expect(answer.status).toBe(502);
    expect(errorOf(answer.json)).toEqual({
      code: "UpstreamError",
      message: expect.stringMatching(
        /^STS AssumeRole acs:ram::1000000000000001:role\/acr-pull: refused with 400 InvalidParameter\.DurationSeconds: .*; STS refused a 7200 s session: a role session assuming another role .*set expireDuration to 3600 or less for this registry, or give the broker a RAM user's access key as its identity instead of a role/,
      ),
    });

    // The same two-hour session, asked for by a RAM user, is granted.
    const asUser = await request(prod, {}, env!.context(brokerUser));
    expect(asUser.status).toBe(200);
    expect(env!.emulator.log.filter({ api: "sts:AssumeRole" }).map((entry) => [entry.principal, entry.outcome])).toEqual([
      [expect.stringMatching(/assumed-role\/fc-broker\//), "InvalidParameter.DurationSeconds"],
      [`acs:ram::${platform}:user/broker`, "ok"],
    ]);
  });
});
