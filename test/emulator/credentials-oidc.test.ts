/**
 * The `@alicloud/credentials` oidc_role_arn provider insists on https, and Node reads
 * NODE_EXTRA_CA_CERTS only when a process starts: so the client runs in a child process started
 * with the emulator's CA, exactly as a pod with RRSA would run it.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../emulator/index.ts";
import { createTestIssuer, type TestIssuer } from "./oidc-issuer.ts";
import { accountA, instances, testWorld } from "./world.ts";

const run = promisify(execFile);
const repo = new URL("../../", import.meta.url).pathname;
const provider = `acs:ram::${accountA}:oidc-provider/ack-rrsa-c1`;
const role = `acs:ram::${accountA}:role/rrsa-pull`;

// Fetches credentials with the provider, then uses them through openapi-core for a CR call.
const client = `
import { createRequire } from "node:module";
const require = createRequire(process.env.REPO + "package.json");
const credentials = require("@alicloud/credentials");
const OpenApi = require("@alicloud/openapi-core");
const dara = require("@darabonba/typescript");
const Credential = credentials.default;
const credential = new Credential(new credentials.Config({
  type: "oidc_role_arn", roleArn: process.env.ROLE_ARN, oidcProviderArn: process.env.PROVIDER_ARN,
  oidcTokenFilePath: process.env.TOKEN_FILE, stsEndpoint: process.env.STS_HTTPS, roleSessionName: "rrsa-pod",
}));
try {
  const model = await credential.getCredential();
  const api = new OpenApi.default(new OpenApi.$OpenApiUtil.Config({ credential, endpoint: process.env.CR_HTTP, protocol: "http" }));
  const params = new OpenApi.$OpenApiUtil.Params({ action: "GetAuthorizationToken", version: "2018-12-01", protocol: "HTTPS", pathname: "/", method: "POST", authType: "AK", style: "RPC", reqBodyType: "formData", bodyType: "json" });
  const cr = await api.callApi(params, new OpenApi.$OpenApiUtil.OpenApiRequest({ query: { InstanceId: process.env.INSTANCE_ID } }), new dara.RuntimeOptions({}));
  console.log(JSON.stringify({ ok: true, accessKeyId: model.accessKeyId, providerName: model.providerName, hasToken: Boolean(model.securityToken), crSuccess: cr.body.IsSuccess }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, message: String(error.message) }));
}
`;

describe("the @alicloud/credentials oidc_role_arn provider against the emulator's HTTPS port", () => {
  let emulator: Emulator;
  let issuer: TestIssuer;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "credentials-oidc-"));
    issuer = await createTestIssuer("https://oidc.test/cluster-1");
    emulator = await startEmulator({
      world: testWorld({
        oidcProviders: [{ name: "ack-rrsa-c1", issuer: issuer.issuer, clientIds: ["sts.aliyuncs.com"], jwks: issuer.jwks }],
        rrsaTrust: {
          Statement: [
            {
              Effect: "Allow",
              Action: "sts:AssumeRole",
              Principal: { Federated: [provider] },
              Condition: { StringEquals: { "oidc:aud": "sts.aliyuncs.com", "oidc:sub": "system:serviceaccount:kube-system:acr-helper" } },
            },
          ],
        },
      }),
    });
  });
  afterAll(async () => {
    await emulator?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  async function runClient(token: string, extraEnv: Record<string, string>) {
    const tokenFile = join(dir, `token-${Math.random().toString(36).slice(2)}`);
    await writeFile(tokenFile, token);
    const env = {
      PATH: process.env.PATH ?? "",
      REPO: repo,
      ROLE_ARN: role,
      PROVIDER_ARN: provider,
      TOKEN_FILE: tokenFile,
      STS_HTTPS: emulator.endpoints.https.replace("https://", ""),
      CR_HTTP: emulator.endpoints.cr,
      INSTANCE_ID: instances.demo,
      ...extraEnv,
    };
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", client], { env, timeout: 20_000 });
    return JSON.parse(stdout.trim()) as { ok: boolean; accessKeyId?: string; providerName?: string; hasToken?: boolean; crSuccess?: boolean; message?: string };
  }

  it("gets STS credentials over https when the emulator's CA is in NODE_EXTRA_CA_CERTS, and signs CR calls with them", async () => {
    const result = await runClient(await issuer.sign({ sub: "system:serviceaccount:kube-system:acr-helper" }), {
      NODE_EXTRA_CA_CERTS: emulator.endpoints.caFile,
    });
    expect(result).toEqual({ ok: true, accessKeyId: expect.stringMatching(/^STS\./), providerName: "oidc_role_arn", hasToken: true, crSuccess: true });
    expect(emulator.log.count({ api: "sts:AssumeRoleWithOIDC", outcome: "ok" })).toBe(1);
    expect(emulator.log.filter({ api: "cr:GetAuthorizationToken" }).map((entry) => entry.principal)).toEqual([
      `acs:ram::${accountA}:assumed-role/rrsa-pull/rrsa-pod`,
    ]);
  });

  it("surfaces the emulator's refusal when the token's subject is not trusted", async () => {
    const result = await runClient(await issuer.sign({ sub: "system:serviceaccount:default:intruder" }), { NODE_EXTRA_CA_CERTS: emulator.endpoints.caFile });
    expect(result.ok).toBe(false);
    expect(result.message).toMatch(/get sts token failed with OIDC: .*AuthenticationFail\.NoPermission/);
  });

  it("cannot connect without trusting the emulator's CA", async () => {
    const result = await runClient(await issuer.sign({}), {});
    expect(result.ok).toBe(false);
    expect(result.message).toMatch(/certificate/i);
  });
});
