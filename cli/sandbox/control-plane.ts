/**
 * A real Kubernetes control plane on this machine (etcd + kube-apiserver from the binaries
 * test/kube/build.sh builds): what the `*.kube.test.ts` suites share and what `acr-credential local
 * --with-cluster` runs the refresher against. Development only: nothing in a deployed artefact uses it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync } from "node:fs";
import { mkdtemp, mkdir, rm, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { KubeConfig, RbacAuthorizationV1Api } from "@kubernetes/client-node";
import { Agent, fetch } from "undici";
import { stringify } from "yaml";
import type { KubeBinaries } from "./kube-binaries.ts";
import { createCertificateAuthority } from "../../emulator/tls.ts";

/** RSA 2048 (RS256 tokens) is what ACK and kubeadm clusters use; ECDSA P-256 (ES256) is envtest's default. */
export type SigningKeyType = "rsa" | "ec";

export interface ControlPlaneOptions {
  binaries: KubeBinaries;
  signingKey?: SigningKeyType;
  startTimeoutMs?: number;
}

/** Everything a client needs to reach the control plane; plain data, so it can cross to test workers. */
export interface ControlPlaneEndpoints {
  apiserverUrl: string;
  /** The service-account issuer, `https://127.0.0.1:<port>` without a trailing slash. */
  issuer: string;
  /** PEM of the CA that signed the apiserver's serving certificate, and the file holding it. */
  caPem: string;
  caFile: string;
  /** Admin kubeconfig (system:masters, static token), self-contained, and the file holding it. */
  kubeconfig: string;
  kubeconfigFile: string;
  adminToken: string;
  signingAlgorithm: "RS256" | "ES256";
  dataDir: string;
}

/** The kube-apiserver of a control plane, to stop and start on its own while etcd keeps the data. */
export interface ApiserverProcess {
  /** Kills kube-apiserver with SIGKILL and waits for it to exit; etcd keeps running. */
  stop(): Promise<void>;
  /** Starts it again on the same port with the same flags, certificates, signing keys and etcd; resolves once /readyz answers. */
  start(): Promise<void>;
}

export interface ControlPlane extends ControlPlaneEndpoints {
  startedInMs: number;
  /**
   * Not enumerable: spreading a ControlPlane into its endpoints (as global-setup does to hand them
   * to test workers) leaves it out, so only the code that started a control plane can stop its apiserver.
   */
  readonly apiserver: ApiserverProcess;
  /** Stops kube-apiserver and etcd and removes the data folder. Safe to call more than once. */
  stop(): Promise<void>;
}

const loopback = "127.0.0.1";
const logTailLines = 25;

// Started before etcd and kube-apiserver and told their pids and data folder: when this process
// dies in any way (even SIGKILL), its stdin closes and the guard kills them and removes the folder.
const orphanGuard = `
const { rmSync } = require("node:fs");
const pids = new Set();
let dataDir;
let pending = "";
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"]) process.on(signal, () => {});
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  pending += chunk;
  const lines = pending.split("\\n");
  pending = lines.pop();
  for (const line of lines) {
    const [verb, ...rest] = line.split(" ");
    const arg = rest.join(" ");
    if (verb === "pid") pids.add(Number(arg));
    if (verb === "dir") dataDir = arg;
    if (verb === "release") { pids.clear(); dataDir = undefined; }
  }
});
process.stdin.on("close", () => {
  for (const pid of pids) { try { process.kill(pid, "SIGKILL"); } catch {} }
  if (dataDir) { try { rmSync(dataDir, { recursive: true, force: true }); } catch {} }
  process.exit(0);
});
`;

/**
 * Starts etcd and kube-apiserver on free loopback ports with RBAC, a static admin token, an https
 * service-account issuer whose discovery document and JWKS anyone may read, and data in a temp folder.
 */
export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  // A port found free can be taken by another process before etcd or the apiserver binds it.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(options);
    } catch (error) {
      if (attempt >= 3 || !(error instanceof Error && /address already in use/.test(error.message))) throw error;
    }
  }
}

async function startOnce(options: ControlPlaneOptions): Promise<ControlPlane> {
  const started = performance.now();
  const signingKey = options.signingKey ?? "rsa";
  const timeoutMs = options.startTimeoutMs ?? 90_000;
  const dataDir = await mkdtemp(join(tmpdir(), "acr-kube-"));
  const processes: ChildProcess[] = [];

  const guard = spawn(process.execPath, ["-e", orphanGuard], { stdio: ["pipe", "ignore", "ignore"] });
  guard.unref();
  (guard.stdin as Socket).unref();
  guard.stdin?.write(`dir ${dataDir}\n`);

  const stop = async (): Promise<void> => {
    // The apiserver first, so it does not spend its shutdown retrying a vanished etcd.
    for (const child of [...processes].reverse()) await terminate(child);
    await rm(dataDir, { recursive: true, force: true });
    guard.stdin?.end("release\n");
  };

  try {
    const [etcdClientPort, etcdPeerPort, securePort] = await freeLoopbackPorts();
    const etcdUrl = `http://${loopback}:${etcdClientPort}`;
    const apiserverUrl = `https://${loopback}:${securePort}`;
    const issuer = apiserverUrl;

    const files = await writeCredentials(dataDir, signingKey);

    const etcdPeerUrl = `http://${loopback}:${etcdPeerPort}`;
    const etcd = launch(options.binaries.etcd, "etcd", dataDir, [
      "--name=default",
      `--data-dir=${join(dataDir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${etcdPeerUrl}`,
      `--initial-advertise-peer-urls=${etcdPeerUrl}`,
      `--initial-cluster=default=${etcdPeerUrl}`,
      // Test data is thrown away; skipping fsync makes every write (and the start) much faster.
      "--unsafe-no-fsync=true",
      "--log-level=warn",
    ]);
    processes.push(etcd.child);
    guard.stdin?.write(`pid ${etcd.child.pid}\n`);
    await waitUntil("etcd", etcd, timeoutMs, started, async () => {
      const response = await globalThis.fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2_000) });
      return response.ok;
    });

    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      `--bind-address=${loopback}`,
      `--advertise-address=${loopback}`,
      `--secure-port=${securePort}`,
      `--tls-cert-file=${files.servingCertificate}`,
      `--tls-private-key-file=${files.servingKey}`,
      `--token-auth-file=${files.tokens}`,
      "--authorization-mode=RBAC",
      `--service-account-issuer=${issuer}`,
      `--service-account-jwks-uri=${issuer}/openid/v1/jwks`,
      `--service-account-key-file=${files.serviceAccountPublicKey}`,
      `--service-account-signing-key-file=${files.serviceAccountPrivateKey}`,
      "--service-cluster-ip-range=10.0.0.0/24",
      "--allow-privileged=true",
      // Like envtest: this plugin waits for a `default` ServiceAccount that only the (absent) controller-manager creates.
      "--disable-admission-plugins=ServiceAccount",
      // The `kubernetes` Service cannot point at a loopback address; without this the apiserver logs that every 10 s.
      "--endpoint-reconciler-type=none",
      "--profiling=false",
    ];
    const startApiserver = async (since: number): Promise<void> => {
      const apiserver = launch(options.binaries.kubeApiserver, "kube-apiserver", dataDir, apiserverArgs);
      processes.push(apiserver.child);
      guard.stdin?.write(`pid ${apiserver.child.pid}\n`);
      const dispatcher = new Agent({ connect: { ca: files.caPem } });
      const authorization = `Bearer ${files.adminToken}`;
      try {
        await waitUntil("kube-apiserver", apiserver, timeoutMs, since, async () => {
          const response = await fetch(`${apiserverUrl}/readyz`, {
            dispatcher,
            headers: { authorization },
            signal: AbortSignal.timeout(2_000),
          });
          await response.body?.cancel();
          return response.ok;
        });
      } finally {
        await dispatcher.close();
      }
    };
    await startApiserver(started);

    const runningApiservers = () => processes.filter((child) => child !== etcd.child && child.exitCode === null && child.signalCode === null);
    const apiserverProcess: ApiserverProcess = {
      // SIGKILL models an apiserver that stopped without warning (crash, OOM kill, lost node): open
      // connections are reset and new ones refused, with no GOAWAY and no drain of requests in flight.
      // A SIGTERM'd apiserver finishes what it has started, which is the milder case of the two.
      stop: async () => {
        await Promise.all(runningApiservers().map((child) => kill(child)));
      },
      start: async () => {
        if (runningApiservers().length > 0) throw new Error("kube-apiserver is already running; stop it first");
        await startApiserver(performance.now());
      },
    };

    const kubeconfig = adminKubeconfig(apiserverUrl, files.caPem, files.adminToken);
    const kubeconfigFile = join(dataDir, "admin.kubeconfig");
    await writeFile(kubeconfigFile, kubeconfig, { mode: 0o600 });
    const config = new KubeConfig();
    config.loadFromString(kubeconfig);
    await allowUnauthenticatedIssuerDiscovery(config);

    const plane = {
      apiserverUrl,
      issuer,
      caPem: files.caPem,
      caFile: files.caFile,
      kubeconfig,
      kubeconfigFile,
      adminToken: files.adminToken,
      signingAlgorithm: signingKey === "rsa" ? "RS256" : "ES256",
      dataDir,
      startedInMs: Math.round(performance.now() - started),
      stop: once(stop),
    };
    return Object.defineProperty(plane, "apiserver", { value: apiserverProcess, enumerable: false }) as ControlPlane;
  } catch (error) {
    await stop();
    throw error;
  }
}

async function writeCredentials(dataDir: string, signingKey: SigningKeyType) {
  const ca = await createCertificateAuthority("acr-credential-broker test cluster CA");
  const serving = await ca.issue(["localhost", "kubernetes", "kubernetes.default.svc", loopback]);
  const serviceAccountKeys =
    signingKey === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : generateKeyPairSync("ec", { namedCurve: "prime256v1" });
  const adminToken = randomBytes(32).toString("base64url");

  const dir = join(dataDir, "pki");
  await mkdir(dir, { mode: 0o700 });
  const files = {
    caFile: join(dir, "ca.crt"),
    servingCertificate: join(dir, "apiserver.crt"),
    servingKey: join(dir, "apiserver.key"),
    serviceAccountPublicKey: join(dir, "sa.pub"),
    serviceAccountPrivateKey: join(dir, "sa.key"),
    tokens: join(dir, "tokens.csv"),
  };
  await Promise.all([
    writeFile(files.caFile, ca.certPem),
    writeFile(files.servingCertificate, serving.certPem),
    writeFile(files.servingKey, serving.keyPem, { mode: 0o600 }),
    writeFile(files.serviceAccountPublicKey, serviceAccountKeys.publicKey.export({ type: "spki", format: "pem" })),
    writeFile(files.serviceAccountPrivateKey, serviceAccountKeys.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 }),
    // token,user,uid,"groups": the admin is a superuser through system:masters, as in envtest.
    writeFile(files.tokens, `${adminToken},admin,admin,"system:masters"\n`, { mode: 0o600 }),
  ]);
  return { ...files, caPem: ca.certPem, adminToken };
}

function adminKubeconfig(server: string, caPem: string, token: string): string {
  return stringify({
    apiVersion: "v1",
    kind: "Config",
    clusters: [{ name: "acr-test", cluster: { server, "certificate-authority-data": Buffer.from(caPem).toString("base64") } }],
    users: [{ name: "admin", user: { token } }],
    contexts: [{ name: "acr-test-admin", context: { cluster: "acr-test", user: "admin", namespace: "default" } }],
    "current-context": "acr-test-admin",
  });
}

// The bootstrap policy binds issuer discovery to service accounts only and leaves anonymous access to
// the cluster admin; the broker fetches discovery and JWKS without credentials, as it would on ACK.
async function allowUnauthenticatedIssuerDiscovery(config: KubeConfig): Promise<void> {
  await config.makeApiClient(RbacAuthorizationV1Api).createClusterRoleBinding({
    body: {
      metadata: { name: "service-account-issuer-discovery-unauthenticated" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:service-account-issuer-discovery" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:unauthenticated" }],
    },
  });
}

interface Launched {
  child: ChildProcess;
  logFile: string;
  exited: Promise<void>;
}

function launch(binary: string, name: string, dataDir: string, args: string[]): Launched {
  const logFile = join(dataDir, `${name}.log`);
  const log = openSync(logFile, "a");
  const child = spawn(binary, args, { stdio: ["ignore", log, log] });
  closeSync(log);
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve());
    child.once("error", () => resolve());
  });
  return { child, logFile, exited };
}

async function waitUntil(name: string, launched: Launched, timeoutMs: number, since: number, ready: () => Promise<boolean>): Promise<void> {
  let exited = false;
  void launched.exited.then(() => (exited = true));
  let spawnError: Error | undefined;
  launched.child.once("error", (error) => (spawnError = error));

  while (performance.now() - since < timeoutMs) {
    if (spawnError) throw new Error(`${name} could not be started: ${spawnError.message}`);
    if (exited) {
      throw new Error(
        `${name} exited during start (code ${launched.child.exitCode ?? launched.child.signalCode}); its log ends:\n${logTail(launched.logFile)}`,
      );
    }
    if (await ready().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${name} was not ready after ${Math.round(timeoutMs / 1000)}s; its log ends:\n${logTail(launched.logFile)}`);
}

function logTail(file: string): string {
  try {
    const text = readFileSync(file, "utf8").trimEnd();
    return text ? text.split("\n").slice(-logTailLines).join("\n") : "(nothing logged)";
  } catch {
    return "(no log written)";
  }
}

async function terminate(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  // The grace timer is cancelled on exit so it does not hold the process open for its full length.
  const grace = new AbortController();
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs, false, { signal: grace.signal }).catch(() => false)]);
  grace.abort();
  if (!inTime) {
    child.kill("SIGKILL");
    await exited;
  }
}

async function kill(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

async function freeLoopbackPorts(): Promise<[number, number, number]> {
  // All listeners stay open until every port is known, so the same port is never handed out twice.
  const servers = await Promise.all(
    [0, 1, 2].map(() => {
      const server = createServer();
      return new Promise<typeof server>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, loopback, () => resolve(server));
      });
    }),
  );
  const [first, second, third] = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  if (first === undefined || second === undefined || third === undefined) throw new Error("no free loopback ports");
  return [first, second, third];
}

function once(action: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= action());
}
