import { startEmulator, type Emulator } from "../../../emulator/index.ts";
import { createLogger } from "../../../shared/log.ts";
import { createTestCluster, defaultSubject, type TestCluster } from "../../functions/broker/support/clusters.ts";
import { brokerUser, brokerWorld, instances, roles } from "../../functions/broker/support/world.ts";
import { startBrokerProcess, type BrokerProcess } from "./broker-process.ts";
import { createLogScan, type LogScan } from "./log-scan.ts";

/**
 * The broker process in front of the emulator: cluster `prod` (RS256) may receive the platform's
 * Enterprise instance through a role and the Personal registry of cn-beijing. The emulator runs in
 * the test process, so its request log counts every upstream call the broker makes; both logs go
 * into one scan with the broker user's secret key.
 */
export interface BrokerUnderTest {
  emulator: Emulator;
  broker: BrokerProcess;
  prod: TestCluster;
  scan: LogScan;
  /** Upstream calls the broker has made so far (every STS and CR request the emulator saw). */
  upstreamCalls(): number;
  /** A fresh valid token of `prod`, remembered as a secret. */
  token(): Promise<string>;
  close(): Promise<void>;
}

export const platformEntry = {
  instanceId: instances.platform.instanceId,
  regionId: instances.platform.regionId,
  domains: instances.platform.domains,
  assumeRoleArn: roles.acrPull,
  expireDuration: 3600,
};
export const personalEntry = { regionId: "cn-beijing" };

export async function startBrokerUnderTest(
  options: { clusters?: Array<Record<string, unknown>>; config?: Record<string, unknown> } = {},
): Promise<BrokerUnderTest> {
  const scan = createLogScan();
  const prod = await createTestCluster("prod");
  const rrsa = await createTestCluster("rrsa", { alg: "ES256" });
  let emulatorLog = "";
  const emulator = await startEmulator({
    world: brokerWorld(rrsa),
    logger: createLogger("emulator", { level: "debug", destination: { write: (line: string) => void (emulatorLog += line) } }),
  });
  const broker = await startBrokerProcess({
    identity: brokerUser,
    config: {
      audience: "acr-credential-broker",
      alibabaCloud: { stsEndpoint: emulator.endpoints.sts, crEndpoint: emulator.endpoints.cr, protocol: "http" },
      ...options.config,
      clusters: [
        { name: "prod", issuer: prod.issuer, jwks: prod.jwks, subjects: [defaultSubject], registries: [platformEntry, personalEntry] },
        ...(options.clusters ?? []),
      ],
    },
  });
  scan.secret(brokerUser.accessKeySecret);
  scan.source("broker", () => broker.output());
  scan.source("emulator", () => emulatorLog);
  return {
    emulator,
    broker,
    prod,
    scan,
    upstreamCalls: () => emulator.log.count(),
    token: async () => {
      const token = await prod.mint();
      scan.secret(token);
      scan.secret(token.split(".")[2]);
      return token;
    },
    close: async () => {
      await broker.stop();
      await emulator.close();
    },
  };
}
