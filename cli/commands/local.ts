import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { gzipSync } from "node:zlib";
import type { World } from "../../emulator/index.ts";
import { parseConfig } from "../../functions/broker/config.ts";
import { createHandler } from "../../functions/broker/handler.ts";
import { serveBroker } from "../../functions/broker/node-http.ts";
import { createRuntime } from "../../functions/broker/runtime.ts";
import { getAuthorizationToken } from "../../shared/alibaba/cr.ts";
import type { AccessKey } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import type { Command } from "../args.ts";
import { parseFlags, parsePort, untilSignal } from "../args.ts";
import { defaultStateDir, demoIssuer, demoSubject, ensureDemoCluster } from "./token.ts";

const usage = `Usage: acr-credential local [--port 9000] [--state-dir .local] [--without-registry]

Starts the local sandbox (npm start): the Alibaba Cloud emulator with the demo world
(emulator/worlds/demo.yaml), a real docker-registry behind it when docker-registry is installed
(seeded with demo/hello:latest when skopeo is too), and the broker on 127.0.0.1:PORT configured
for a demo cluster whose signing key is kept under the state directory. Prints the broker URL, a
command that mints a demo token and a curl that fetches credentials. Ctrl-C stops everything.

  --port N             broker port; 0 picks a free one (default 9000)
  --state-dir DIR      where the demo cluster's key and the logs live (default .local in the repository)
  --without-registry   do not start docker-registry even if it is installed`;

const worldFile = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const repositoryRoot = new URL("../../", import.meta.url).pathname;
const platformAccount = "1000000000000001";
const pullRole = `acs:ram::${platformAccount}:role/acr-pull`;
const demoInstance = { instanceId: "cri-demo", regionId: "cn-hangzhou" };
const demoRepository = "demo/hello";
/** Added to the demo world so `acr-credential renew` works in the sandbox; a fake key like all the others. */
const operatorKey = { accessKeyId: "TESTAKDEMOOPERATOR1", accessKeySecret: "test-secret-demo-operator-do-not-use" };
export const sandboxFunction = { service: "acr-credential-broker", functionName: "broker" };

function userKey(world: World, name: string): AccessKey {
  const key = world.accounts.find((a) => a.id === platformAccount)?.users.find((u) => u.name === name)?.accessKeys[0];
  if (!key) throw new AcrCredentialError("ConfigInvalid", `${worldFile}: account ${platformAccount} has no user '${name}' with an access key; the sandbox needs it`);
  return { accessKeyId: key.id, accessKeySecret: key.secret };
}

/** The demo world with the demo cluster's keys on its RRSA provider and an operator allowed to invoke the broker function. */
function sandboxWorld(world: World, publicJwk: object): World {
  const patched = structuredClone(world);
  const platform = patched.accounts.find((a) => a.id === platformAccount);
  if (!platform) throw new AcrCredentialError("ConfigInvalid", `${worldFile}: no account ${platformAccount}`);
  for (const provider of platform.oidcProviders) if (provider.issuer === demoIssuer) provider.jwks = { keys: [publicJwk as { kty: string }] };
  platform.users.push({
    name: "operator",
    accessKeys: [{ id: operatorKey.accessKeyId, secret: operatorKey.accessKeySecret }],
    policies: [{ Statement: [{ Effect: "Allow", Action: ["fc:InvokeFunction"], Resource: [`acs:fc:*:${platformAccount}:services/${sandboxFunction.service}/functions/*`] }] }] as never,
  });
  return patched;
}

// A one-layer image written with Node alone, so the sandbox needs no container tooling beyond skopeo.
function tarWithOneFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  const octal = (value: number, width: number) => `${value.toString(8).padStart(width - 1, "0")}\0`;
  header.write(name, 0, 100, "utf8");
  header.write(octal(0o644, 8), 100, "ascii");
  header.write(octal(0, 8), 108, "ascii");
  header.write(octal(0, 8), 116, "ascii");
  header.write(octal(content.length, 12), 124, "ascii");
  header.write(octal(0, 12), 136, "ascii");
  header.write("        ", 148, "ascii");
  header.write("0", 156, "ascii");
  header.write("ustar\0", 257, "ascii");
  header.write("00", 263, "ascii");
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  return Buffer.concat([header, content, Buffer.alloc((512 - (content.length % 512)) % 512), Buffer.alloc(1024)]);
}

async function writeDemoImage(dir: string, tag: string): Promise<void> {
  const sha256 = (data: Buffer) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const blob = async (data: Buffer, mediaType: string) => {
    await writeFile(join(dir, "blobs", "sha256", sha256(data).slice(7)), data);
    return { mediaType, digest: sha256(data), size: data.length };
  };
  const tar = tarWithOneFile("hello.txt", Buffer.from("hello from the acr-credential-broker sandbox\n"));
  const layer = await blob(gzipSync(tar), "application/vnd.oci.image.layer.v1.tar+gzip");
  const config = await blob(Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: {}, rootfs: { type: "layers", diff_ids: [sha256(tar)] } })), "application/vnd.oci.image.config.v1+json");
  const manifest = await blob(Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config, layers: [layer] })), "application/vnd.oci.image.manifest.v1+json");
  await writeFile(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  await writeFile(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifest, annotations: { "org.opencontainers.image.ref.name": tag } }] }));
}

/** skopeo with a throw-away HOME and policy, so it reads and writes nothing of the user's. */
function skopeo(home: string, args: string[]): Promise<void> {
  const env = { PATH: process.env.PATH ?? "", HOME: home, XDG_RUNTIME_DIR: home, XDG_CONFIG_HOME: home, XDG_DATA_HOME: home, CONTAINERS_REGISTRIES_CONF: join(home, "registries.conf"), _CONTAINERS_ROOTLESS_UID: String(process.getuid?.() || 1000) };
  return new Promise((resolvePromise, reject) => {
    execFile("skopeo", ["--policy", join(home, "policy.json"), "--tmpdir", home, ...args], { env }, (error, _stdout, stderr) => (error ? reject(new Error(oneLine(stderr || error.message))) : resolvePromise()));
  });
}

/** Pushes demo/hello:latest into the sandbox registry as the demo world's publisher. */
async function seedDemoImage(cr: string, registryHost: string, publisher: AccessKey): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "acr-sandbox-image-"));
  try {
    await writeFile(join(work, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
    await writeFile(join(work, "registries.conf"), "");
    await writeDemoImage(join(work, "layout"), "latest");
    const login = await getAuthorizationToken({ stsEndpoint: cr, crEndpoint: cr, protocol: "http" }, { kind: "keys", keys: publisher }, demoInstance, { timeoutMs: 10_000 });
    await skopeo(work, ["copy", "--dest-tls-verify=false", "--dest-creds", `${login.username}:${login.password}`, `oci:${join(work, "layout")}:latest`, `docker://${registryHost}/${demoRepository}:latest`]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const onPath = (name: string) => (process.env.PATH ?? "").split(":").some((dir) => dir !== "" && existsSync(join(dir, name)));

export const command: Command = {
  summary: "start the local sandbox: emulator, broker and a demo cluster (npm start)",
  usage,
  async run(argv) {
    const { values } = parseFlags("local", argv, { port: { type: "string" }, "state-dir": { type: "string" }, "without-registry": { type: "boolean" } });
    const port = parsePort("local", values.port, 9000);
    const stateDir = resolve(values["state-dir"] ?? defaultStateDir);
    await mkdir(stateDir, { recursive: true });

    const { loadWorld, startEmulator } = await import("../../emulator/index.ts");
    const { dockerRegistryAvailable } = await import("../../emulator/registry/index.ts");
    const demo = await ensureDemoCluster(stateDir);
    const demoWorld = await loadWorld(worldFile);
    const world = sandboxWorld(demoWorld, demo.publicJwk);
    const withRegistry = values["without-registry"] !== true && dockerRegistryAvailable();
    const emulator = await startEmulator({ world, registry: withRegistry });
    const stops: Array<() => Promise<void>> = [() => emulator.close()];
    const stopAll = async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    };
    try {
      const registryHost = emulator.endpoints.registry;
      let seeded = false;
      if (registryHost && onPath("skopeo")) {
        try {
          await seedDemoImage(emulator.endpoints.cr, registryHost, userKey(demoWorld, "publisher"));
          seeded = true;
        } catch (error) {
          console.error(`acr-credential local: could not push the demo image (${oneLine(error)}); the registry starts empty`);
        }
      }

      const config = parseConfig(
        {
          audience: "acr-credential-broker",
          alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
          clusters: [
            {
              name: "demo",
              issuer: demo.issuer,
              jwks: { keys: [demo.publicJwk] },
              subjects: [demoSubject],
              allowRrsa: true,
              registries: [
                { ...demoInstance, assumeRoleArn: pullRole, expireDuration: 3600, ...(registryHost ? { domains: [registryHost] } : {}) },
                { regionId: "cn-hangzhou", assumeRoleArn: pullRole, expireDuration: 3600 },
              ],
            },
          ],
        },
        "the sandbox configuration",
      );
      const logFile = join(stateDir, "broker.log");
      const logStream = createWriteStream(logFile, { flags: "a" });
      stops.push(() => new Promise((done) => logStream.end(() => done())));
      const runtime = createRuntime({ loaded: { config, baseDir: stateDir, source: "sandbox" }, log: createLogger("broker", { destination: logStream }), clock: emulator.clock, baseIdentity: { kind: "keys", keys: userKey(demoWorld, "broker") } });
      const handler = createHandler(() => runtime);
      const unregister = emulator.functions.register(sandboxFunction.service, sandboxFunction.functionName, handler);
      stops.push(async () => unregister());
      const server = await serveBroker(handler, { port });
      stops.push(() => server.close());

      const cli = `node ${relative(process.cwd(), join(repositoryRoot, "bin/acr-credential.mjs")) || "bin/acr-credential.mjs"}`;
      const stateFlag = values["state-dir"] ? ` --state-dir ${stateDir}` : "";
      console.log(
        [
          "acr-credential local: the sandbox is running (Ctrl-C stops it)",
          "",
          `  broker     ${server.url}`,
          `  emulator   ${emulator.endpoints.http}`,
          `  registry   ${registryHost ? `${registryHost}${seeded ? `  (${demoRepository}:latest)` : ""}` : "not started (install the Debian package docker-registry)"}`,
          `  logs       ${logFile}`,
          "",
          "Mint a demo ServiceAccount token:",
          `  TOKEN=$(${cli} token --cluster demo${stateFlag})`,
          "",
          "Fetch registry credentials with it:",
          `  curl -s -X POST ${server.url}/v1/credentials -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}'`,
          ...(registryHost && seeded
            ? ["", "Pull with the Enterprise entry's username and password:", `  skopeo inspect --tls-verify=false --creds "USERNAME:PASSWORD" docker://${registryHost}/${demoRepository}:latest`]
            : []),
          "",
          "Renew through Function Compute's InvokeFunction:",
          `  ALIBABA_CLOUD_ACCESS_KEY_ID=${operatorKey.accessKeyId} ALIBABA_CLOUD_ACCESS_KEY_SECRET=${operatorKey.accessKeySecret} ${cli} renew --function ${sandboxFunction.service}/${sandboxFunction.functionName} --account-id ${platformAccount} --endpoint ${emulator.endpoints.fc}`,
          "",
        ].join("\n"),
      );
      await untilSignal();
    } finally {
      await stopAll();
    }
    return 0;
  },
};
