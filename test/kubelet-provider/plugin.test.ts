/**
 * The plugin binary as the kubelet runs it (CredentialProviderRequest on stdin, configuration from
 * args and env) against the broker's HTTP server behind TLS, with the emulator behind it: it
 * relays the broker's answer, and on any failure prints one line on stderr, nothing on stdout, and
 * exits non-zero.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startBrokerEnv, type BrokerEnv } from "../functions/broker/support/broker-env.ts";
import { createTestCluster, type TestCluster } from "../functions/broker/support/clusters.ts";
import { brokerUser, instances, roles } from "../functions/broker/support/world.ts";
import { buildPlugin, goAvailable, run, serveBrokerHttps, type HttpsBroker } from "./support.ts";

const noGo = !goAvailable() && process.env.CI !== "true";
if (noGo) console.log("skipping test/kubelet-provider/plugin.test.ts: Go is not installed (needed to build the plugin)");

const platformHost = instances.platform.domains[0]!;
const apiVersion = "credentialprovider.kubelet.k8s.io/v1";

describe.skipIf(noGo)("the kubelet credential provider plugin", () => {
  let work: string;
  let plugin: string;
  let env: BrokerEnv;
  let prod: TestCluster;
  let broker: HttpsBroker;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kubelet-plugin-"));
    plugin = buildPlugin(join(work, "bin"));
    prod = await createTestCluster("prod");
    env = await startBrokerEnv({
      clusters: () => [
        {
          name: "prod",
          key: prod,
          kubeletProvider: {
            grants: [
              {
                serviceAccounts: ["system:serviceaccount:shop:*"],
                registries: [{ instanceId: "cri-plat", regionId: "cn-hangzhou", assumeRoleArn: roles.acrPull, expireDuration: 3600 }],
                annotationRoles: [],
              },
            ],
          },
        },
      ],
    });
    broker = await serveBrokerHttps(env.runtime, work, { kind: "keys", keys: brokerUser });
  }, 120_000);
  afterAll(async () => {
    await broker?.close();
    await env?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const token = (subject: string) => prod.mint({ claims: { sub: subject, aud: ["acr-credential-broker-kubelet"] } });
  const request = async (subject: string, image = `${platformHost}/apps/web:1`) =>
    JSON.stringify({ apiVersion, kind: "CredentialProviderRequest", image, serviceAccountToken: await token(subject), serviceAccountAnnotations: {} });

  it("relays the broker's CredentialProviderResponse for a granted ServiceAccount", async () => {
    const result = await run(plugin, ["--broker-url", broker.url, "--ca-file", broker.caFile], await request("system:serviceaccount:shop:web"));
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const response = JSON.parse(result.stdout) as {
      apiVersion: string;
      kind: string;
      cacheKeyType: string;
      cacheDuration: string;
      auth: Record<string, { username: string; password: string }>;
    };
    expect(response).toMatchObject({ apiVersion, kind: "CredentialProviderResponse", cacheKeyType: "Registry" });
    expect(Object.keys(response.auth).sort()).toEqual([...instances.platform.domains].sort());
    // 3600 s session, 900 s margin, seconds gone by while asking.
    const seconds = Number(/^(\d+)s$/.exec(response.cacheDuration)?.[1]);
    expect(seconds).toBeGreaterThan(2690);
    expect(seconds).toBeLessThanOrEqual(2700);
  });

  it("takes its configuration from the environment as well", async () => {
    const result = await run(plugin, [], await request("system:serviceaccount:shop:web"), {
      ACR_BROKER_URL: broker.url,
      ACR_BROKER_CA_FILE: broker.caFile,
      ACR_BROKER_TIMEOUT: "5s",
    });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ kind: "CredentialProviderResponse" });
  });

  it("exits 1 with the broker's refusal on one line and nothing on stdout for a ServiceAccount no grant names", async () => {
    const result = await run(plugin, ["--broker-url", broker.url, "--ca-file", broker.caFile], await request("system:serviceaccount:other:web"));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^acr-credential-kubelet-provider: broker refused .* \(403 Forbidden\): .*system:serviceaccount:other:web.*\n$/);
    expect(result.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("exits 1 with nothing on stdout when the broker is down", async () => {
    const down = await serveBrokerHttps(env.runtime, await mkdtemp(join(work, "down-")), { kind: "keys", keys: brokerUser });
    await down.close();
    const result = await run(plugin, ["--broker-url", down.url, "--ca-file", down.caFile], await request("system:serviceaccount:shop:web"));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^acr-credential-kubelet-provider: broker unreachable at 127\.0\.0\.1:\d+: .*connection refused\n$/);
  });

  it("gives up after --timeout when the broker does not answer", async () => {
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    try {
      const started = Date.now();
      const result = await run(
        plugin,
        ["--broker-url", `http://127.0.0.1:${(silent.address() as AddressInfo).port}`, "--timeout", "300ms"],
        await request("system:serviceaccount:shop:web"),
      );
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/broker unreachable.*Timeout/i);
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      silent.closeAllConnections();
      silent.close();
    }
  });

  it("refuses a broker whose certificate it cannot verify", async () => {
    const result = await run(plugin, ["--broker-url", broker.url], await request("system:serviceaccount:shop:web"));
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/certificate/);
  });

  it("relays no incomplete answer (a faulty broker stand-in, since the real one cannot be made to send one)", async () => {
    const faulty: Server = createServer((_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ apiVersion, kind: "CredentialProviderResponse", cacheKeyType: "Registry", cacheDuration: "1h", auth: {} }));
    });
    await new Promise<void>((resolve) => faulty.listen(0, "127.0.0.1", resolve));
    try {
      const result = await run(
        plugin,
        ["--broker-url", `http://127.0.0.1:${(faulty.address() as AddressInfo).port}`],
        await request("system:serviceaccount:shop:web"),
      );
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/holds no credential/);
    } finally {
      faulty.close();
    }
  });

  it("exits 1 naming tokenAttributes when the kubelet sends no ServiceAccount token", async () => {
    const before = broker.requests.get("/v1/kubelet-credentials");
    const result = await run(
      plugin,
      ["--broker-url", broker.url, "--ca-file", broker.caFile],
      JSON.stringify({ apiVersion, kind: "CredentialProviderRequest", image: `${platformHost}/apps/web:1` }),
    );
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/no ServiceAccount token; set tokenAttributes/);
    expect(broker.requests.get("/v1/kubelet-credentials")).toBe(before);
  });

  it("is a static binary built from the standard library alone, and says its version", async () => {
    const info = await run("go", ["version", "-m", plugin], "");
    expect(info.stdout).toMatch(/\bCGO_ENABLED=0\b/);
    // `dep` lines would name modules outside the standard library.
    expect(info.stdout).not.toMatch(/^\s*dep\s/m);
    const packageJson = JSON.parse(await readFile(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    expect((await run(plugin, ["--version"], "")).stdout).toBe(`acr-credential-kubelet-provider ${packageJson.version}\n`);
  });

  it("exits 2 with one line naming the setting for a configuration mistake", async () => {
    const input = await request("system:serviceaccount:shop:web");
    for (const [args, message] of [
      [[], /no broker URL; set --broker-url or ACR_BROKER_URL/],
      [["--broker-url", "http://broker.example.com"], /not an https URL/],
      [["--broker-url", broker.url, "--timeout", "forever"], /timeout "forever" is not a duration/],
      [["--broker-url", broker.url, "--ca-file", join(work, "missing.pem")], /cannot read the CA file/],
      [["--broker-uri", broker.url], /flag provided but not defined: -broker-uri/],
    ] as Array<[string[], RegExp]>) {
      const result = await run(plugin, args, input);
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(message);
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
    }
  });
});
