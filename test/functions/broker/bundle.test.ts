/**
 * The deployable artefact: `npm run build` writes a CommonJS file that Function Compute's
 * nodejs20 runtime loads with require(), and beside it the SDKs it requires on its first upstream
 * call. Here it runs in a fresh node process, in a directory without node_modules, against the emulator.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { startRedisServer } from "../../support/redis-server.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./support/clusters.ts";
import { brokerUser, brokerWorld, platform } from "./support/world.ts";

const run = promisify(execFile);
const repo = new URL("../../../", import.meta.url).pathname;

// What FC's runtime does: require the file, run the initializer, call the handler with a Buffer.
const runner = `
const { handler, initialize } = require("./index.js");
const event = Buffer.from(process.argv[2]);
initialize({}, (error) => {
  if (error) { console.log(JSON.stringify({ initError: error.message })); return; }
  handler(event, { requestId: "bundle-1", credentials: JSON.parse(process.env.TEST_CREDENTIALS), function: { timeout: 30 } })
    // Which of the bundle's files this process has required so far.
    .then((response) => {
      console.log(JSON.stringify({ ...response, loaded: Object.keys(require.cache).map((file) => require("node:path").basename(file)).sort() }));
      /* answered */
    });
});
`;

let dir: string;
let emulator: Emulator;
let cluster: TestCluster;
const ackClusterId = "c0bundled000001";

beforeAll(async () => {
  await run(process.execPath, [join(repo, "build.mjs"), "broker"], { cwd: repo });
  dir = await mkdtemp(join(tmpdir(), "broker-bundle-"));
  for (const file of await readdir(join(repo, "dist/broker"))) if (file.endsWith(".js")) await copyFile(join(repo, "dist/broker", file), join(dir, file));
  await writeFile(join(dir, "run.cjs"), runner);
  cluster = await createTestCluster("bundled");
  const world = brokerWorld(cluster);
  // An ACK cluster for the cluster-group path, which the bundle reaches through the SDK's response model.
  const own = world.accounts[0]!;
  own
    .users!.find((user) => user.name === "broker")!
    .policies!.push({ Statement: [{ Effect: "Allow", Action: "cs:DescribeClusterDetail", Resource: `acs:cs:*:${platform}:cluster/*` }] });
  own.ackClusters = [{ id: ackClusterId, region: "cn-hangzhou", rrsa: { enabled: true } }];
  emulator = await startEmulator({ world });
}, 120_000);

afterAll(async () => {
  await emulator?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function invoke(event: unknown, config: unknown, logLines?: string[]) {
  const { stdout } = await run(process.execPath, ["run.cjs", JSON.stringify(event)], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      BROKER_CONFIG: typeof config === "string" ? config : JSON.stringify(config),
      TEST_CREDENTIALS: JSON.stringify(brokerUser),
      LOG_LEVEL: logLines ? "info" : "error",
      NODE_PATH: "",
    },
  });
  logLines?.push(
    ...stdout
      .trim()
      .split("\n")
      .filter((l) => l.includes('"level":')),
  );
  // stdout also carries the broker's JSON log lines; the runner's line is the one without a level.
  const line = stdout
    .trim()
    .split("\n")
    .find((l) => !l.includes('"level":'));
  return JSON.parse(line!) as { statusCode: number; headers: Record<string, string>; body: string; initError?: string; loaded?: string[] };
}

describe("the built bundle dist/broker/index.js", () => {
  it("answers an FC HTTP event with registry credentials from a fresh node process without node_modules", async () => {
    const config = {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      clusters: [{ name: "bundled", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] }],
    };
    const event = {
      version: "v1",
      rawPath: "/v1/credentials",
      body: JSON.stringify({}),
      isBase64Encoded: false,
      headers: { Authorization: `Bearer ${await cluster.mint()}`, "Content-Type": "application/json" },
      requestContext: { requestId: "bundle-1", http: { method: "POST", path: "/v1/credentials", sourceIp: "10.0.0.1" } },
    };
    const response = await invoke(event, config);
    expect(response.statusCode).toBe(200);
    expect(response.headers["cache-control"]).toBe("no-store");
    const body = JSON.parse(response.body) as { cluster: string; credentials: Array<{ edition: string; password: string }> };
    expect(body.cluster).toBe("bundled");
    expect(body.credentials[0]).toMatchObject({ edition: "personal", password: expect.any(String) });
    expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken", outcome: "ok" })).toBe(1);
    // The SDKs were required for the upstream call; the YAML parser was not, the configuration being JSON.
    expect(response.loaded).toEqual(["index.js", "run.cjs", "upstream.js"]);
  });

  it("trusts an ACK cluster by rule, confirmed through the ACK API, and logs counts, not cluster names, when ready", async () => {
    const config = {
      audience: "acr-credential-broker",
      alibabaCloud: {
        stsEndpoint: emulator.endpoints.sts,
        crEndpoint: emulator.endpoints.cr,
        csEndpoint: emulator.endpoints.cs,
        ackIssuer: emulator.endpoints.ackIssuer,
        protocol: "http",
      },
      clusters: Array.from({ length: 40 }, (_, i) => ({
        name: `listed-${i}`,
        issuer: `https://oidc.example.test/listed-${i}`,
        jwks: cluster.jwks,
        subjects: [defaultSubject],
      })),
      clusterGroups: [{ name: "ack", accounts: [{ id: platform }], subjects: [defaultSubject], registries: [{ regionId: "cn-beijing" }] }],
    };
    const token = await emulator.ack.sign(ackClusterId, { sub: defaultSubject, aud: "acr-credential-broker" });
    const event = {
      version: "v1",
      rawPath: "/v1/credentials",
      body: "{}",
      isBase64Encoded: false,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      requestContext: { requestId: "bundle-2", http: { method: "POST", path: "/v1/credentials", sourceIp: "10.0.0.1" } },
    };
    const lines: string[] = [];
    const response = await invoke(event, config, lines);
    expect(response.statusCode).toBe(200);
    expect((JSON.parse(response.body) as { cluster: string }).cluster).toBe(`ack/${ackClusterId}`);
    expect(emulator.log.count({ api: "cs:DescribeClusterDetail", resource: ackClusterId, outcome: "ok" })).toBe(1);
    const ready = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === "broker ready");
    expect(ready).toMatchObject({ clusters: 40, clusterGroups: 1 });
    expect(JSON.stringify(ready)).not.toContain("listed-");
  });

  it("is what s.yaml deploys: nodejs20, index.handler, index.initialize, code in dist/broker", async () => {
    const { parse } = await import("yaml");
    const { readFile } = await import("node:fs/promises");
    const props = (parse(await readFile(join(repo, "s.yaml"), "utf8")) as { resources: { broker: { component: string; props: Record<string, unknown> } } })
      .resources.broker;
    expect(props.component).toBe("fc3");
    expect(props.props).toMatchObject({
      runtime: "nodejs20",
      code: "./dist/broker",
      handler: "index.handler",
      instanceLifecycleConfig: { initializer: { handler: "index.initialize" } },
      environmentVariables: { BROKER_CONFIG_FILE: "broker.yaml" },
    });
    expect((props.props.triggers as Array<{ triggerType: string }>)[0]!.triggerType).toBe("http");
  });

  it("reads a YAML configuration with the parser it requires from yaml.js only then", async () => {
    const { stringify } = await import("yaml");
    const yamlConfig = stringify({
      audience: "acr-credential-broker",
      clusters: [{ name: "bundled", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject] }],
    });
    const event = { version: "v1", rawPath: "/healthz", headers: {}, requestContext: { requestId: "bundle-2", http: { method: "GET", path: "/healthz" } } };
    const answered = await invoke(event, yamlConfig);
    expect(answered.statusCode).toBe(200);
    // GET /healthz needs no upstream call: the SDKs stay unread.
    expect(answered.loaded).toEqual(["index.js", "run.cjs", "yaml.js"]);
    expect((await invoke(event, "audience: [unclosed\n")).initError).toMatch(/^BROKER_CONFIG: not valid YAML or JSON: /);
  });

  it("shares credentials between two instances through Redis when sharedCache and BROKER_CACHE_KEY are set", async () => {
    const redis = await startRedisServer();
    try {
      // One FC instance per process; it exits after its answer, since the Redis connection would keep it alive.
      await writeFile(join(dir, "run-once.cjs"), runner.replace("/* answered */", "process.exit(0);"));
      const config = {
        audience: "acr-credential-broker",
        alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
        clusters: [{ name: "bundled", issuer: cluster.issuer, jwks: cluster.jwks, subjects: [defaultSubject], registries: [{ regionId: "cn-hangzhou" }] }],
        sharedCache: { url: redis.url },
      };
      const event = {
        version: "v1",
        rawPath: "/v1/credentials",
        body: "{}",
        isBase64Encoded: false,
        headers: { Authorization: `Bearer ${await cluster.mint()}` },
        requestContext: { requestId: "bundle-2", http: { method: "POST", path: "/v1/credentials", sourceIp: "10.0.0.1" } },
      };
      const env = {
        PATH: process.env.PATH,
        BROKER_CONFIG: JSON.stringify(config),
        TEST_CREDENTIALS: JSON.stringify(brokerUser),
        LOG_LEVEL: "error",
        NODE_PATH: "",
        BROKER_CACHE_KEY: `b1:${randomBytes(32).toString("base64")}`,
      };
      const once = async () => {
        const { stdout } = await run(process.execPath, ["run-once.cjs", JSON.stringify(event)], { cwd: dir, env });
        return JSON.parse(
          stdout
            .trim()
            .split("\n")
            .find((l) => !l.includes('"level":'))!,
        ) as { statusCode: number; body: string };
      };
      const before = emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" });
      const [first, second] = [await once(), await once()];
      expect([first.statusCode, second.statusCode]).toEqual([200, 200]);
      expect(emulator.log.count({ api: "cr:GetPersonalAuthorizationToken" })).toBe(before + 1);
      expect(JSON.parse(second.body)).toEqual(JSON.parse(first.body));
      expect((await redis.client.keys("acr-credential-broker:credential:*")).length).toBe(1);
    } finally {
      await redis.close();
    }
  });

  it("fails its initializer with a one-line configuration error", async () => {
    const response = await invoke({}, { audience: "a", clusters: [] });
    expect(response.initError).toMatch(/^BROKER_CONFIG: clusters: /);
  });
});
