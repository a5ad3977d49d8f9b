/**
 * The fleet's traffic, pure: every cluster's refresher fires on the same `*\/5` schedule and reaches
 * the broker a little after the minute (pod start-up spreads the fleet over `burstMs`); with the
 * refresher's call economy (issue 15) a cluster calls only the first time and once its credential is
 * within the renewal threshold plus one interval of expiry, after its spread delay, asking for
 * credentials valid one more interval (`minValiditySeconds`). No I/O here.
 */

/** The emulator's seeded generator (mulberry32), so every configuration replays the same arrivals. */
export { seededRandom } from "../emulator/faults.ts";

export interface Arrival {
  cluster: number;
  /** Model time, epoch ms. */
  at: number;
}

/**
 * One cycle's arrivals: each cluster once, spread uniformly over `burstMs` after `cycleStart`, plus
 * the cluster's own spread delay when given (the refresher's, job/spread.ts), in time order.
 */
export function cycleArrivals(clusters: number, cycleStart: number, burstMs: number, random: () => number, delaysMs?: readonly number[]): Arrival[] {
  const arrivals = Array.from({ length: clusters }, (_, cluster) => ({
    cluster,
    at: cycleStart + (delaysMs?.[cluster] ?? 0) + Math.floor(random() * burstMs),
  }));
  return arrivals.sort((a, b) => a.at - b.at || a.cluster - b.cluster);
}

export interface EconomyRule {
  thresholdMs: number;
  intervalMs: number;
}

/**
 * Whether a refresher with the call economy calls the broker now: it has no credential yet, or the
 * one it holds expires within threshold + one interval (so the next run would be too late).
 */
export function economyWantsCall(expiresAt: number | undefined, now: number, rule: EconomyRule): boolean {
  return expiresAt === undefined || expiresAt - now <= rule.thresholdMs + rule.intervalMs;
}

/** The value below which `fraction` of the values fall (nearest rank). */
export function percentile(values: readonly number[], fraction: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!;
}
