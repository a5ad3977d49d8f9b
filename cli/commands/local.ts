import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import type { World } from "../../emulator/index.ts";
import { writeOciLayout } from "../../emulator/registry/oci-layout.ts";
import { pushLayout, skopeoIn } from "../../emulator/registry/skopeo.ts";
import { parseConfig } from "../../functions/broker/config.ts";
import { createHandler } from "../../functions/broker/handler.ts";
import { serveHttp } from "../../functions/broker/server.ts";
import { createRuntime } from "../../functions/broker/runtime.ts";
import { getAuthorizationToken } from "../../shared/alibaba/cr.ts";
import type { AccessKey } from "../../shared/alibaba/identity.ts";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";
import { createLogger } from "../../shared/log.ts";
import type { Command, Options } from "../args.ts";
import { parseFlags, parsePort, untilSignal } from "../args.ts";
import type { ControlPlane } from "../sandbox/control-plane.ts";
import { builtBinaryDir, findPinnedKubeBinaries, isExecutableFile, pinnedVersions, type BinaryLookup, type KubeBinaries } from "../sandbox/kube-binaries.ts";
import { defaultStateDir, demoIssuer, demoSubject, ensureDemoCluster } from "./token.ts";

const usage = `Usage: acr-credential local [--port 9000] [--state-dir .local] [--without-registry] [--with-cluster]

Starts the local sandbox (npm start): the Alibaba Cloud emulator with the demo world
(emulator/worlds/demo.yaml), a real docker-registry behind it when docker-registry is installed
(seeded with demo/hello:latest when skopeo is too), and the broker on 127.0.0.1:PORT configured
for a demo cluster whose signing key is kept under the state directory. Prints the broker URL, a
command that mints a demo token and a curl that fetches credentials. Ctrl-C stops everything.

  --port N             broker port; 0 picks a free one (default 9000)
  --state-dir DIR      where the demo cluster's key and the logs live (default .local in the repository)
  --without-registry   do not start docker-registry even if it is installed
  --with-cluster       also start a local Kubernetes control plane (kube-apiserver + etcd, built by
                       bash test/kube/build.sh), run the refresher against it and print the kubectl
                       line that shows the pull Secret it wrote`;

const worldFile = new URL("../../emulator/worlds/demo.yaml", import.meta.url).pathname;
const repositoryRoot = new URL("../../", import.meta.url).pathname;
const platformAccount = "1000000000000001";
const pullRole = `acs:ram::${platformAccount}:role/acr-pull`;
const demoInstance = { instanceId: "cri-demo", regionId: "cn-hangzhou" };
const demoRepository = "demo/hello";
/** Added to the demo world so `acr-credential renew` works in the sandbox; a fake key like all the others. */
const operatorKey = { accessKeyId: "TESTAKDEMOOPERATOR1", accessKeySecret: "test-secret-demo-operator-do-not-use" };
/** The broker as s.yaml names it on Function Compute 3.0 (no service). */
export const sandboxFunction = { functionName: "acr-credential-broker" };

function userKey(world: World, name: string): AccessKey {
  const key = world.accounts.find((a) => a.id === platformAccount)?.users.find((u) => u.name === name)?.accessKeys[0];
  if (!key)
    throw new AcrCredentialError("ConfigInvalid", `${worldFile}: account ${platformAccount} has no user '${name}' with an access key; the sandbox needs it`);
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
    policies: [
      { Statement: [{ Effect: "Allow", Action: ["fc:InvokeFunction"], Resource: [`acs:fc:*:${platformAccount}:functions/${sandboxFunction.functionName}`] }] },
    ] as never,
  });
  return patched;
}

/** Pushes demo/hello:latest into the sandbox registry as the demo world's publisher. */
async function seedDemoImage(cr: string, registryHost: string, publisher: AccessKey): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), "acr-sandbox-image-"));
  try {
    await writeOciLayout(join(work, "layout"), { tag: "latest", content: "hello from the acr-credential-broker sandbox\n" });
    const login = await getAuthorizationToken({ stsEndpoint: cr, crEndpoint: cr, protocol: "http" }, { kind: "keys", keys: publisher }, demoInstance, {
      timeoutMs: 10_000,
    });
    const skopeo = await skopeoIn(work);
    const pushed = await pushLayout(skopeo, join(work, "layout"), "latest", `${registryHost}/${demoRepository}:latest`, login);
    if (pushed.code !== 0) throw new Error(oneLine(pushed.stderr || `skopeo exited with ${pushed.code}`));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The control plane's programs, or a one-line error naming the build command. */
export async function controlPlaneBinaries(lookup?: BinaryLookup): Promise<KubeBinaries> {
  const found = lookup ?? findPinnedKubeBinaries();
  if (!found.found) throw new AcrCredentialError("ControlPlaneUnavailable", `--with-cluster needs the Kubernetes test binaries: ${found.reason}`);
  return found.binaries;
}

async function startSandboxControlPlane(binaries: KubeBinaries): Promise<ControlPlane> {
  const { startControlPlane } = await import("../sandbox/control-plane.ts");
  try {
    return await startControlPlane({ binaries });
  } catch (error) {
    throw new AcrCredentialError("ControlPlaneUnavailable", `the local control plane did not start: ${oneLine(error).slice(0, 300)}`);
  }
}

/** A path as the user should type it: relative when it is below the current folder. */
function shown(path: string): string {
  const short = relative(process.cwd(), path);
  return short === "" || short.startsWith("..") ? path : short;
}

/** kubectl as test/kube/build.sh --with-kubectl builds it, else the one on PATH. */
function kubectlCommand(): string {
  const built = join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl");
  return isExecutableFile(built) ? shown(built) : "kubectl";
}

/** The flags, as parsed and as the README's command table lists them. */
const options = {
  port: { type: "string" },
  "state-dir": { type: "string" },
  "without-registry": { type: "boolean" },
  "with-cluster": { type: "boolean" },
} satisfies Options;

export const command: Command = {
  usage,
  options,
  async run(argv) {
    const { values } = parseFlags("local", argv, options);
    const port = parsePort("local", values.port, 9000);
    // Before anything starts, so a missing build leaves nothing half-started.
    const kubeBinaries = values["with-cluster"] === true ? await controlPlaneBinaries() : undefined;
    const stateDir = resolve(values["state-dir"] ?? defaultStateDir);
    await mkdir(stateDir, { recursive: true });

    const { loadWorld, startEmulator } = await import("../../emulator/index.ts");
    const { dockerRegistryAvailable } = await import("../../emulator/registry/index.ts");
    const { findExecutable } = await import("../../emulator/registry/docker-registry.ts");
    const demo = await ensureDemoCluster(stateDir);
    const demoWorld = await loadWorld(worldFile);
    const world = sandboxWorld(demoWorld, demo.publicJwk);
    const withRegistry = values["without-registry"] !== true && dockerRegistryAvailable();
    const emulator = await startEmulator({ world, registry: withRegistry });
    const stops: Array<() => Promise<void>> = [() => emulator.close()];
    let printedCluster: string | undefined;
    const stopAll = async () => {
      for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    };
    try {
      const plane = kubeBinaries === undefined ? undefined : await startSandboxControlPlane(kubeBinaries);
      if (plane !== undefined) stops.push(() => plane.stop());
      // Loaded only with a cluster: it brings the Kubernetes client and the refresher.
      const sandboxCluster = plane === undefined ? undefined : await import("../sandbox/cluster.ts");
      const registryHost = emulator.endpoints.registry;
      let seeded = false;
      if (registryHost && findExecutable("skopeo") !== undefined) {
        try {
          await seedDemoImage(emulator.endpoints.cr, registryHost, userKey(demoWorld, "publisher"));
          seeded = true;
        } catch (error) {
          console.error(`acr-credential local: could not push the demo image (${oneLine(error)}); the registry starts empty`);
        }
      }

      // The demo instance as the broker grants it to both clusters.
      const demoRegistry = { ...demoInstance, assumeRoleArn: pullRole, expireDuration: 3600, ...(registryHost ? { domains: [registryHost] } : {}) };
      const config = parseConfig(
        {
          audience: "acr-credential-broker",
          alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
          clusters: [
            ...(plane === undefined || sandboxCluster === undefined
              ? []
              : [
                  {
                    name: "sandbox-cluster",
                    issuer: plane.issuer,
                    caFile: plane.caFile,
                    regionId: demoInstance.regionId,
                    subjects: [sandboxCluster.refresherSubject],
                    registries: [demoRegistry],
                  },
                ]),
            {
              name: "demo",
              issuer: demo.issuer,
              jwks: { keys: [demo.publicJwk] },
              subjects: [demoSubject],
              allowRrsa: true,
              registries: [demoRegistry, { regionId: "cn-hangzhou", assumeRoleArn: pullRole, expireDuration: 3600 }],
            },
          ],
        },
        "the sandbox configuration",
      );
      const logFile = join(stateDir, "broker.log");
      const logStream = createWriteStream(logFile, { flags: "a" });
      stops.push(() => new Promise((done) => logStream.end(() => done())));
      const runtime = createRuntime({
        loaded: { config, baseDir: stateDir, source: "sandbox" },
        log: createLogger("broker", { destination: logStream }),
        clock: emulator.clock,
        baseIdentity: { kind: "keys", keys: userKey(demoWorld, "broker") },
      });
      const handler = createHandler(() => runtime);
      const unregister = emulator.functions.registerFunction(platformAccount, sandboxFunction.functionName, handler);
      stops.push(async () => unregister());
      // The HTTP API and the renew invocation share one runtime, as one instance's caches.
      const server = await serveHttp(runtime, { port });
      stops.push(() => server.close());

      let clusterLines: string[] = [];
      if (plane !== undefined && sandboxCluster !== undefined) {
        const { demoNamespace, startSandboxRefresher } = sandboxCluster;
        const refresherLog = join(stateDir, "refresher.log");
        const refresherStream = createWriteStream(refresherLog, { flags: "a" });
        stops.push(() => new Promise((done) => refresherStream.end(() => done())));
        const refresher = await startSandboxRefresher(
          plane,
          server.url,
          { ...demoInstance, assumeRoleArn: pullRole, ...(registryHost ? { domain: registryHost } : {}) },
          createLogger("refresher", { destination: refresherStream }),
        );
        stops.push(() => refresher.stop());
        const kubeconfigFile = join(stateDir, "kubeconfig");
        await writeFile(kubeconfigFile, plane.kubeconfig, { mode: 0o600 });
        const kubectl = `${kubectlCommand()} --kubeconfig ${shown(kubeconfigFile)}`;
        clusterLines = [
          refresher.written
            ? "The pull Secret the refresher wrote in namespace demo, and the ServiceAccount it is attached to:"
            : `The refresher has not written its pull Secret yet (${refresherLog} says why); once it has, these show it:`,
          `  ${kubectl} -n ${demoNamespace} get secret ${refresher.secretName}`,
          `  ${kubectl} -n ${demoNamespace} get serviceaccount default -o jsonpath='{.imagePullSecrets}'`,
          "",
        ];
        printedCluster = `${plane.apiserverUrl}  (the refresher runs --watch against it; logs in ${refresherLog})`;
      }

      const cli = `node ${relative(process.cwd(), join(repositoryRoot, "bin/acr-credential.mjs")) || "bin/acr-credential.mjs"}`;
      const stateFlag = values["state-dir"] ? ` --state-dir ${stateDir}` : "";
      console.log(
        [
          "acr-credential local: the sandbox is running (Ctrl-C stops it)",
          "",
          `  broker     ${server.url}`,
          `  emulator   ${emulator.endpoints.http}`,
          `  registry   ${registryHost ? `${registryHost}${seeded ? `  (${demoRepository}:latest)` : ""}` : values["without-registry"] === true ? "not started (--without-registry)" : "not started (install the Debian package docker-registry)"}`,
          `  logs       ${logFile}`,
          ...(printedCluster === undefined ? [] : [`  cluster    ${printedCluster}`]),
          "",
          "Mint a demo ServiceAccount token:",
          `  TOKEN=$(${cli} token --cluster demo${stateFlag})`,
          "",
          "Fetch registry credentials with it:",
          `  curl -s -X POST ${server.url}/v1/credentials -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}'`,
          ...(registryHost && seeded
            ? [
                "",
                "Pull with the Enterprise entry's username and password:",
                `  skopeo inspect --tls-verify=false --creds "USERNAME:PASSWORD" docker://${registryHost}/${demoRepository}:latest`,
              ]
            : []),
          "",
          "Renew through Function Compute's InvokeFunction:",
          `  ALIBABA_CLOUD_ACCESS_KEY_ID=${operatorKey.accessKeyId} ALIBABA_CLOUD_ACCESS_KEY_SECRET=${operatorKey.accessKeySecret} ${cli} renew --function ${sandboxFunction.functionName} --account-id ${platformAccount} --endpoint ${emulator.endpoints.fc}`,
          "",
          ...clusterLines,
        ].join("\n"),
      );
      await untilSignal();
    } finally {
      await stopAll();
    }
    return 0;
  },
};
