/**
 * `acr-credential renew` → FC 3.0 InvokeFunction through `@alicloud/fc20230330` (signed ACS3) → the
 * emulator's Function Compute → the broker handler, which runs as the function's execution role
 * (`context.credentials`).
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { createServer, type AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { parseConfig } from "../../../functions/broker/config.ts";
import { createHandler } from "../../../functions/broker/handler.ts";
import { createRuntime } from "../../../functions/broker/runtime.ts";
import { createTestCluster, defaultSubject } from "../../functions/broker/support/clusters.ts";
import { captureLogs } from "../../functions/broker/support/logs.ts";
import { brokerUser, brokerWorld, operatorUser, platform, roles } from "../../functions/broker/support/world.ts";
import { cli } from "./support.ts";

const longMessage = `${"The cluster's entry names registries the broker cannot reach from this region today. ".repeat(4)}Ask the platform team to add cri-second to the entry.`;
let dir: string;
let emulator: Emulator;
const logs = captureLogs();
const env = (keys = operatorUser) => ({
  PATH: process.env.PATH,
  HOME: dir,
  ALIBABA_CLOUD_ECS_METADATA_DISABLED: "true",
  ALIBABA_CLOUD_ACCESS_KEY_ID: keys.accessKeyId,
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: keys.accessKeySecret,
});
const renew = (args: string[], keys = operatorUser, fn = "acr-credential-broker") =>
  cli(["renew", "--function", fn, "--account-id", platform, "--endpoint", emulator.endpoints.fc, ...args], { env: env(keys) });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "acr-renew-"));
  const cluster = await createTestCluster("prod");
  const world = brokerWorld(cluster);
  const operator = world.accounts.find((account) => account.id === platform)?.users?.find((user) => user.name === "operator");
  operator?.policies?.push({
    Statement: [
      { Effect: "Allow", Action: "fc:InvokeFunction", Resource: [`acs:fc:*:${platform}:functions/long-refusal`, `acs:fc:*:${platform}:functions/crashing`] },
    ],
  } as never);
  emulator = await startEmulator({ world });
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [
        {
          name: "prod",
          issuer: cluster.issuer,
          jwks: cluster.jwks,
          subjects: [defaultSubject],
          registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull }, { regionId: "cn-beijing" }],
        },
        {
          name: "broken",
          issuer: "https://broken.example.test",
          jwks: cluster.jwks,
          subjects: [defaultSubject],
          registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: `acs:ram::${platform}:role/missing` }],
        },
      ],
    },
    "test",
  );
  // No base identity given: like on Function Compute, the handler uses context.credentials.
  const runtime = createRuntime({ loaded: { config, baseDir: ".", source: "test" }, log: logs.log });
  emulator.functions.registerFunction(
    platform,
    "acr-credential-broker",
    createHandler(() => runtime),
    { role: roles.fcBroker },
  );
  // Allowed by the operator's policy only as the function above.
  emulator.functions.registerFunction(platform, "other", async () => ({ clusters: [] }));
  // Stand-ins for the broker's answers renew must print well: a refusal and a crash with long messages.
  emulator.functions.registerFunction(platform, "long-refusal", async () => ({ error: { code: "Forbidden", message: longMessage } }));
  emulator.functions.registerFunction(platform, "crashing", async () => {
    throw new Error(longMessage);
  });
});

afterAll(async () => {
  await emulator?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("acr-credential renew", () => {
  it("renews one cluster's registries as the function's execution role and prints expiries, exit 0", async () => {
    const result = await renew(["--cluster", "prod"]);
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    expect(result.stdout.trim().split("\n").sort()).toEqual([
      expect.stringMatching(/^prod\tcri-plat\tcn-hangzhou\trenewed until \d{4}-/),
      expect.stringMatching(/^prod\tpersonal\tcn-beijing\trenewed until \d{4}-/),
    ]);
    expect(emulator.log.filter({ api: "fc:InvokeFunction" }).map((e) => [e.principal, e.resource, e.outcome])).toEqual([
      [`acs:ram::${platform}:user/operator`, "functions/acr-credential-broker", "ok"],
    ]);
    expect(emulator.log.filter({ api: "sts:AssumeRole" }).map((e) => e.principal)).toEqual([
      expect.stringMatching(/^acs:ram::1000000000000001:assumed-role\/fc-broker\//),
    ]);
  });

  it("exits 1 and names the failing registry when some renewals fail", async () => {
    const result = await renew([]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/^broken\tcri-plat\tcn-hangzhou\tFAILED UpstreamError: .*EntityNotExist\.Role/m);
    expect(result.stdout).toMatch(/^prod\tcri-plat\tcn-hangzhou\trenewed until /m);
  });

  it("names an unknown cluster in one line with the broker's code once, exit 1", async () => {
    const result = await renew(["--cluster", "nope"]);
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      "acr-credential renew: the broker refused: no cluster named 'nope' in the broker configuration; check --cluster, or leave it out to renew every cluster [NotFound]",
    ]);
  });

  it("shortens a long refusal at a sentence's end, not in the middle of one", async () => {
    const result = await renew([], operatorUser, "long-refusal");
    expect(result.code).toBe(1);
    const [line, ...rest] = result.stderr.trim().split("\n");
    expect(rest).toEqual([]);
    expect(line).toMatch(
      /^acr-credential renew: the broker refused: (The cluster's entry names registries the broker cannot reach from this region today\. )+… \[Forbidden\]$/,
    );
  });

  it("shortens the function's own long failure the same way", async () => {
    const result = await renew([], operatorUser, "crashing");
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(
      /^acr-credential renew: the function crashing in cn-hangzhou failed \(UnhandledInvocationError\): (The cluster's entry names registries the broker cannot reach from this region today\. )+… \[UpstreamError\]$/,
    );
  });

  it("is refused for a caller without fc:InvokeFunction, and on a function its policy does not name", async () => {
    const result = await renew(["--cluster", "prod"], brokerUser);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^acr-credential renew: InvokeFunction acr-credential-broker in cn-hangzhou failed: .*AccessDenied.*the caller needs fc:InvokeFunction on the function/,
    );
    // The resource ARN ends where the request id begins, with a separator between them.
    expect(result.stderr).toMatch(
      /AccessDenied \(HTTP 403\): fc:InvokeFunction is not allowed on acs:fc:cn-hangzhou:1000000000000001:functions\/acr-credential-broker; request id [\w-]+; the caller needs/,
    );
    const other = await renew([], operatorUser, "other");
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/fc:InvokeFunction is not allowed on acs:fc:cn-hangzhou:1000000000000001:functions\/other/);
  });

  it("names a function that does not exist in one line", async () => {
    const result = await renew([], operatorUser, "missing");
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      expect.stringMatching(
        /^acr-credential renew: InvokeFunction missing in cn-hangzhou failed: .*FunctionNotFound.*; check --function, --region and --account-id \[UpstreamError\]$/,
      ),
    ]);
  });

  it("names an endpoint nobody answers on in one line, the URL apart from the reason", async () => {
    const closed = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo;
        server.close(() => resolve(port));
      });
    });
    const result = await cli(["renew", "--function", "acr-credential-broker", "--account-id", platform, "--endpoint", `http://127.0.0.1:${closed}`], {
      env: env(),
    });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split("\n")).toEqual([
      `acr-credential renew: InvokeFunction acr-credential-broker in cn-hangzhou failed: cannot reach http://127.0.0.1:${closed} (ECONNREFUSED); check --endpoint (or --region and --account-id) and the network [UpstreamError]`,
    ]);
  });

  it("takes the FC 3.0 function name, and says so for SERVICE/FUNCTION, exit 2", async () => {
    const before = emulator.log.count({ api: "fc:InvokeFunction" });
    const result = await renew([], operatorUser, "acr-credential-broker/acr-credential-broker");
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /--function takes the function's name only \('acr-credential-broker'\): Function Compute 3.0 functions, which s.yaml deploys, have no service/,
    );
    expect(emulator.log.count({ api: "fc:InvokeFunction" })).toBe(before);
  });
});
