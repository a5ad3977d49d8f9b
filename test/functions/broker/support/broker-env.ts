import { createClock, startEmulator, type Clock, type Emulator, type WorldInput } from "../../../../emulator/index.ts";
import { parseConfig, type BrokerConfig } from "../../../../functions/broker/config.ts";
import { createHandler } from "../../../../functions/broker/handler.ts";
import { createRuntime, type BrokerRuntime } from "../../../../functions/broker/runtime.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "./clusters.ts";
import { testContext, type FcHandler } from "./invoke.ts";
import { captureLogs } from "./logs.ts";
import { brokerUser, brokerWorld } from "./world.ts";

/**
 * A broker (through its FC handler) wired to the emulator: clusters with their own keys, the
 * broker user's key as FC's `context.credentials`, a clock shared by both, and captured logs.
 */
export interface BrokerEnv {
  emulator: Emulator;
  clock: Clock;
  runtime: BrokerRuntime;
  handler: FcHandler;
  /** A handler of a new broker instance (empty caches) on the same configuration and emulator. */
  freshHandler(): FcHandler;
  /** The cluster allowed RRSA (also the issuer of the world's OIDC provider). */
  rrsa: TestCluster;
  logs: ReturnType<typeof captureLogs>;
  context: typeof testContext;
  close(): Promise<void>;
}

export type ClusterSpec = Omit<BrokerConfig["clusters"][number], "issuer" | "jwks" | "subjects" | "allowRrsa" | "registries"> &
  Partial<Pick<BrokerConfig["clusters"][number], "subjects" | "allowRrsa" | "registries">> & { key: TestCluster };

export async function startBrokerEnv(
  options: {
    clusters?: (rrsa: TestCluster) => ClusterSpec[];
    config?: Record<string, unknown>;
    frozenClock?: boolean;
    env?: Record<string, string>;
    /** Changes to the standard world. */
    world?: (world: WorldInput) => WorldInput;
  } = {},
): Promise<BrokerEnv> {
  const rrsa = await createTestCluster("rrsa", { alg: "ES256" });
  const clock = createClock(options.frozenClock ? { frozen: true } : {});
  const world = brokerWorld(rrsa);
  const emulator = await startEmulator({ world: options.world?.(world) ?? world, clock });
  const specs = options.clusters?.(rrsa) ?? [];
  const config = parseConfig(
    {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      ...options.config,
      clusters: specs.map(({ key, ...spec }) => ({
        subjects: [defaultSubject],
        registries: [],
        ...spec,
        issuer: key.issuer,
        ...(spec.jwksUri ? {} : { jwks: key.jwks }),
      })),
    },
    "test",
  );
  const logs = captureLogs();
  // Fast backoff so retry tests do not wait; the schedule itself is tested on its own.
  const runtimes: BrokerRuntime[] = [];
  const makeRuntime = () => {
    const made = createRuntime({
      loaded: { config, baseDir: ".", source: "test" },
      log: logs.log,
      clock,
      backoff: { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 5 },
      ...(options.env ? { env: options.env } : {}),
    });
    runtimes.push(made);
    return made;
  };
  const runtime = makeRuntime();
  return {
    emulator,
    clock,
    runtime,
    handler: createHandler(() => runtime),
    freshHandler: () => {
      const fresh = makeRuntime();
      return createHandler(() => fresh);
    },
    rrsa,
    logs,
    context: (credentials = brokerUser) => testContext(credentials),
    close: async () => {
      await Promise.all(runtimes.map((r) => r.close()));
      await emulator.close();
    },
  };
}
