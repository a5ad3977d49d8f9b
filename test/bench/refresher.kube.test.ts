import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { measureRefresher, type RefresherBenchResult } from "../../bench/refresher.ts";
import { builtBinaryDir, isExecutableFile, pinnedVersions } from "../kube/binaries.ts";
import { kubeAvailable, kubeEnv } from "../kube/cluster.ts";
import { acquireRefresherLock } from "../job/kube-lock.ts";

/**
 * A tiny run of the refresher benchmark on the suite's API server: a couple of namespaces for the
 * kubectl comparison and a handful for the cold and warm runs. It checks the figures' shape and
 * sanity, not speed. The API server is shared with other test files, so the request count is only
 * checked to be positive here; `npm run bench` measures it on a server of its own.
 */
const kubectlBuilt = isExecutableFile(join(builtBinaryDir(pinnedVersions().kubernetes), "kubectl"));
if (kubeAvailable() && !kubectlBuilt)
  console.log("skipping test/bench/refresher.kube.test.ts: kubectl is not built; run `bash test/kube/build.sh --with-kubectl`");

describe.skipIf(!kubeAvailable() || !kubectlBuilt)("the refresher benchmark, run small", () => {
  let release: () => Promise<void>;
  let result: RefresherBenchResult;

  beforeAll(async () => {
    release = await acquireRefresherLock("bench refresher.kube.test");
    result = await measureRefresher({
      plane: kubeEnv(),
      baselineNamespaces: 2,
      rounds: 1,
      largeNamespaces: 5,
      brokerCallHours: 2,
      namespacePrefix: `bench-${randomBytes(3).toString("hex")}-`,
    });
  }, 170_000);

  afterAll(async () => {
    await release?.();
  });

  it("times the kubectl loop and the bundled refresher on the same namespaces count", () => {
    expect(result.rounds).toHaveLength(1);
    const [round] = result.rounds;
    expect(round!.kubectlMs).toBeGreaterThan(0);
    expect(round!.refresherMs).toBeGreaterThan(0);
    expect(result.coldSpeedupVsKubectl).toBeCloseTo(round!.kubectlMs / round!.refresherMs, 10);
  });

  it("writes nothing on the warm run with unchanged credentials", () => {
    expect(result.large.changed).toEqual([]);
    expect(result.warmWrites).toBe(0);
  });

  it("counts the broker calls of simulated hours at the broker: the first run's, then one renewal per credential lifetime, none forced", () => {
    const { brokerCalls } = result;
    expect(brokerCalls.runs).toBe(24);
    expect(brokerCalls.credentialLifetimeMinutes).toBe(60);
    expect(brokerCalls.calls).toBeGreaterThanOrEqual(2);
    expect(brokerCalls.calls).toBeLessThanOrEqual(3);
    // Renewals ask with minValiditySeconds, which the broker serves by refreshing once for every cluster.
    expect(brokerCalls.forced).toBe(0);
    expect(brokerCalls.callsPerHour).toBe(brokerCalls.calls / 2);
  });

  it("counts the warm run's API requests and the peak RSS of both runs", () => {
    expect(result.large.warmRequests).toBeGreaterThan(0);
    expect(result.warmRequestsPerNamespace).toBe(result.large.warmRequests / 5);
    expect(result.large.coldPeakRssMb).toBeGreaterThan(10);
    expect(result.large.warmPeakRssMb).toBeGreaterThan(10);
    expect(result.peakRssMb).toBe(Math.max(result.large.coldPeakRssMb, result.large.warmPeakRssMb));
  });
});
