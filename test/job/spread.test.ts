import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { clusterIdentity, spreadDelayMs } from "../../job/spread.ts";

const windowMs = 120_000;
const uids = Array.from({ length: 2000 }, () => randomUUID());

describe("the fleet spread", () => {
  it("keeps every cluster's delay inside the window", () => {
    for (const uid of uids) {
      const delay = spreadDelayMs(uid, windowMs);
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(windowMs);
      expect(Number.isInteger(delay)).toBe(true);
    }
  });

  it("gives one cluster the same delay on every run", () => {
    const uid = uids[0]!;
    expect(new Set(Array.from({ length: 5 }, () => spreadDelayMs(uid, windowMs))).size).toBe(1);
  });

  it("spreads a fleet over the whole window: different delays, every tenth of the window used about equally", () => {
    const delays = uids.map((uid) => spreadDelayMs(uid, windowMs));
    expect(new Set(delays).size).toBeGreaterThan(uids.length * 0.95);
    const buckets = Array.from({ length: 10 }, () => 0);
    for (const delay of delays) buckets[Math.floor((delay / windowMs) * 10)]! += 1;
    // 200 expected per bucket; a uniform spread stays well within ±40% for 2,000 clusters.
    for (const count of buckets) expect(count).toBeGreaterThan(120);
    for (const count of buckets) expect(count).toBeLessThan(280);
  });

  it("scales with the window, and a window of 0 (--no-spread) or an unknown identity means no delay", () => {
    const uid = uids[1]!;
    expect(spreadDelayMs(uid, 10_000)).toBeLessThan(10_000);
    expect(spreadDelayMs(uid, 0)).toBe(0);
    expect(spreadDelayMs(undefined, windowMs)).toBe(0);
  });

  it("identifies a cluster by its kube-system namespace's uid", () => {
    const namespaces = [
      { name: "default", uid: "d-1", terminating: false, annotations: {} },
      { name: "kube-system", uid: "k-1", terminating: false, annotations: {} },
    ];
    expect(clusterIdentity(namespaces)).toBe("k-1");
    expect(clusterIdentity(namespaces.slice(0, 1))).toBeUndefined();
  });
});
