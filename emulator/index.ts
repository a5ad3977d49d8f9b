import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import { AcrCredentialError, oneLine } from "../shared/errors.ts";
import { createLogger } from "../shared/log.ts";
import { createAck, hostedIssuerPath, type Ack } from "./ack.ts";
import { createAuthenticator } from "./authenticate.ts";
import { createClock, type Clock } from "./clock.ts";
import { createCr } from "./cr.ts";
import { createFaultInjector, type FaultSettings } from "./faults.ts";
import { createFunctions, type FunctionRegistry } from "./fc.ts";
import { createOidcVerifier } from "./oidc.ts";
import { createDirectory } from "./ram/directory.ts";
import { createSessionStore } from "./ram/sessions.ts";
import { createCredentialStore } from "./registry-credentials.ts";
import { createRealmSigner, createTokenRealm, dockerRegistryAvailable, startDockerRegistry } from "./registry/index.ts";
import { createRequestLog, type RequestLog } from "./request-log.ts";
import { createRouter } from "./server.ts";
import { createSts } from "./sts.ts";
import { createServerTls } from "./tls.ts";
import { parseWorld, parseWorldText, type World, type WorldInput } from "./world.ts";

export type { Clock } from "./clock.ts";
export { createClock } from "./clock.ts";
export type { FaultSettings } from "./faults.ts";
export type { FcContext, FunctionHandler, FunctionRegistry, RegisterOptions } from "./fc.ts";
export type { RequestLog, RequestLogEntry, RequestLogFilter } from "./request-log.ts";
export type { World, WorldInput } from "./world.ts";
export { loadWorld, parseWorldText } from "./world.ts";

export interface EmulatorOptions {
  /** A world object, or its YAML text; `loadWorld(file)` reads and validates a file. */
  world: WorldInput | World | string;
  /** HTTP port on 127.0.0.1; default 0 (a free port). */
  port?: number;
  /** HTTPS port on 127.0.0.1; default 0. */
  httpsPort?: number;
  /** Governs every expiry; default a clock that starts at the real time and can be moved. */
  clock?: Clock;
  /** Default: the world's `faults`, if any. */
  faults?: FaultSettings;
  /** Also start a real docker-registry that trusts the emulator's token realm. */
  registry?: boolean;
  /** Where certificates and registry data go; default a fresh temporary directory removed on close(). */
  stateDir?: string;
  /** Request logs (JSON, never secrets); default silent. */
  logger?: Logger;
}

export interface EmulatorEndpoints {
  http: string;
  https: string;
  /** `host:port` for `Config.endpoint` of `@alicloud/sts20150401` (with `protocol: "http"`). */
  sts: string;
  /** `host:port` for `Config.endpoint` of the CR client (`callApi`). */
  cr: string;
  /** `host:port` for `Config.endpoint` of `@alicloud/cs20151215` (ACK). */
  cs: string;
  /** The form of the issuers the emulator hosts for ACK clusters, for the broker's `alibabaCloud.ackIssuer`. */
  ackIssuer: string;
  /** Full URL for the `endpoint` option of `@alicloud/fc2`. */
  fc: string;
  /** The CA that signed the HTTPS certificate (for `NODE_EXTRA_CA_CERTS`). */
  caFile: string;
  /** The docker token-auth realm. */
  realm: string;
  /** `127.0.0.1:PORT` of the docker-registry, when started. */
  registry?: string;
}

export interface Emulator {
  endpoints: EmulatorEndpoints;
  world: World;
  log: RequestLog;
  clock: Clock;
  faults: { set(settings: FaultSettings): void; clear(): void };
  functions: FunctionRegistry;
  /** The world's ACK clusters: their issuers, and tokens signed by them. */
  ack: Pick<Ack, "issuerOf" | "sign">;
  /**
   * Temporary credentials of a role assumed by a cloud service (`fc.aliyuncs.com` for a function's
   * execution role), as that service would obtain them; the role's trust policy must admit it.
   */
  assumeRoleForService(
    roleArn: string,
    service: string,
    sessionName: string,
    durationSeconds?: number,
  ): { accessKeyId: string; accessKeySecret: string; securityToken: string };
  close(): Promise<void>;
}

/** The registry `service` and token `issuer` the realm and the docker-registry agree on. */
export const registryService = "registry.aliyuncs.com:emulator";
export const registryIssuer = "acr-credential-broker-emulator";

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      reject(
        new AcrCredentialError(
          "UsageError",
          `cannot listen on 127.0.0.1:${port}: ${error.code ?? oneLine(error)}; choose another --port or 0 for any free port`,
        ),
      );
    });
    server.listen(port, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Starts the emulator: one HTTP and one HTTPS port serving STS, CR, FC and the registry realm. */
export async function startEmulator(options: EmulatorOptions): Promise<Emulator> {
  const world =
    typeof options.world === "string" ? parseWorldText(options.world, { source: "<inline world>" }) : parseWorld(options.world, { source: "<world object>" });
  const clock = options.clock ?? createClock();
  const logger = options.logger ?? createLogger("emulator", { level: "silent" });
  const ownsStateDir = options.stateDir === undefined;
  const stateDir = options.stateDir ?? (await mkdtemp(join(tmpdir(), "acr-emulator-")));
  const closers: (() => Promise<void>)[] = [];
  const close = async () => {
    for (const closer of closers.splice(0).reverse()) await closer().catch(() => undefined);
  };
  if (ownsStateDir) closers.push(() => rm(stateDir, { recursive: true, force: true }));

  try {
    if (options.registry === true && !dockerRegistryAvailable()) {
      throw new AcrCredentialError(
        "RegistryUnavailable",
        "docker-registry is not installed; install the Debian package docker-registry, or start the emulator without a registry",
      );
    }
    await Promise.all(["tls", "realm", "registry"].map((sub) => mkdir(join(stateDir, sub), { recursive: true })));
    const [tls, signer] = await Promise.all([createServerTls(join(stateDir, "tls")), createRealmSigner(join(stateDir, "realm"))]);

    const directory = createDirectory(world);
    const sessions = createSessionStore(() => clock.now());
    const credentials = createCredentialStore(clock);
    const sts = createSts({
      directory,
      sessions,
      clock,
      oidc: createOidcVerifier({ now: () => clock.now() }),
      ...(world.sts.roleChainingMaxDuration === undefined ? {} : { roleChainingMaxDuration: world.sts.roleChainingMaxDuration }),
    });
    const cr = createCr({ directory, credentials, clock });
    const functions = createFunctions({ sts });
    const faults = createFaultInjector(options.faults ?? world.faults);
    const log = createRequestLog();
    const realm = createTokenRealm({
      service: registryService,
      issuer: registryIssuer,
      signer,
      now: () => clock.now(),
      lookup: (username, password) => credentials.lookup(username, password),
      onDecision: (decision) =>
        log.record({
          at: clock.now(),
          api: "registry:Auth",
          principal: decision.subject === "" ? "anonymous" : decision.subject,
          outcome: decision.outcome,
          status: decision.status,
          requestId: "",
          resource: decision.scope,
        }),
    });
    const bound: { http?: string } = {};
    const ack = createAck({ world, baseUrl: () => bound.http!, log, now: () => clock.now() });
    const router = createRouter({
      authenticator: createAuthenticator({ directory, sessions, clock }),
      sts,
      cr,
      ack,
      functions,
      faults,
      log,
      clock,
      realm,
      logger,
    });

    const http = createHttpServer(router);
    const https = createHttpsServer({ cert: tls.cert, key: tls.key }, router);
    const httpPort = await listen(http, options.port ?? 0);
    closers.push(() => stop(http));
    const httpsPort = await listen(https, options.httpsPort ?? 0);
    closers.push(() => stop(https));

    const base = `127.0.0.1:${httpPort}`;
    bound.http = `http://${base}`;
    const endpoints: EmulatorEndpoints = {
      http: `http://${base}`,
      https: `https://127.0.0.1:${httpsPort}`,
      sts: base,
      cr: base,
      cs: base,
      ackIssuer: `http://${base}${hostedIssuerPath("{regionId}", "{clusterId}")}`,
      fc: `http://${base}`,
      caFile: tls.caFile,
      realm: `http://${base}/auth`,
    };
    if (options.registry === true) {
      const registry = await startDockerRegistry({
        realm: endpoints.realm,
        service: registryService,
        issuer: registryIssuer,
        rootCertBundle: signer.certPath,
        dataDir: join(stateDir, "registry"),
      });
      closers.push(() => registry.close());
      endpoints.registry = registry.host;
    }
    return {
      endpoints,
      world,
      log,
      clock,
      faults: { set: (settings) => faults.set(settings), clear: () => faults.clear() },
      functions: functions.registry,
      ack: { issuerOf: (id) => ack.issuerOf(id), sign: (id, claims) => ack.sign(id, claims) },
      assumeRoleForService: (roleArn, service, sessionName, durationSeconds) => {
        const { accessKeyId, accessKeySecret, securityToken } = sts.assumeRoleForService(roleArn, service, sessionName, durationSeconds);
        return { accessKeyId, accessKeySecret, securityToken };
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
