/**
 * The fleet benchmark's measured window, pure: what drives a configuration's upstream calls, how
 * long its window is so that it holds a whole number of those periods (an hour holds one or two
 * 45-minute renewals depending on its phase; three hours hold four whatever the phase), whether the
 * renewals the run itself made divide the window, and the long-run rate with the domain discovery
 * that happens only every `discoveredDomainsTtlSeconds` (before the window).
 */
import type { FleetConfig, FleetOptions } from "./fleet-bench.ts";

/**
 * What a configuration's upstream calls follow:
 * - `coldStarts`: nothing survives a cycle (instances reclaimed, no shared cache), so every cycle
 *   fetches afresh; any whole number of cycles is a whole number of periods;
 * - `brokerRenewals`: without the call economy but with state carried over (a shared cache, a kept
 *   instance), the broker renews when its credential is within `refreshBeforeExpirySeconds` of
 *   expiry (every 45 minutes with one-hour credentials);
 * - `refresherRenewals`: with the call economy, the fleet's renewal waves (every 40 minutes).
 */
export type UpstreamDriver = "coldStarts" | "brokerRenewals" | "refresherRenewals";

export type WindowOptions = Pick<
  FleetOptions,
  "measuredMinutes" | "brokerRenewalMeasuredMinutes" | "economyMeasuredMinutes" | "idleSeconds" | "intervalMinutes"
>;

/** Whether a configuration's cycles depend on earlier ones (so it needs the warm-up). */
export function carriesState(config: FleetConfig, options: Pick<FleetOptions, "idleSeconds" | "intervalMinutes">): boolean {
  return config.economy || config.sharedCache || (config.provisioned ?? 0) > 0 || options.idleSeconds >= options.intervalMinutes * 60;
}

/** The measured window of a configuration: the option for what drives its upstream calls. */
export function measuredWindow(config: FleetConfig, options: WindowOptions): { follows: UpstreamDriver; minutes: number } {
  if (config.economy) return { follows: "refresherRenewals", minutes: options.economyMeasuredMinutes };
  if (carriesState(config, options)) return { follows: "brokerRenewals", minutes: options.brokerRenewalMeasuredMinutes };
  return { follows: "coldStarts", minutes: options.measuredMinutes };
}

/**
 * Minutes between the cycles in which the run refreshed upstream (one AssumeRole or more in a
 * cycle is one refresh), in order, from the last refresh before `windowStart` on: the gaps that
 * decide what the window counts. (A light warm-up's first renewal may come a cycle late: its few
 * requests can all arrive before the credential is due.) `times` are the AssumeRole calls' model times.
 */
export function refreshGapsMinutes(times: readonly number[], start: number, intervalMinutes: number, windowStart = start): number[] {
  const intervalMs = intervalMinutes * 60_000;
  const cycles = [...new Set(times.map((at) => Math.floor((at - start) / intervalMs)))].sort((a, b) => a - b);
  const windowCycle = Math.floor((windowStart - start) / intervalMs);
  const from = Math.max(0, cycles.filter((cycle) => cycle < windowCycle).length - 1);
  const counted = cycles.slice(from);
  return counted.slice(1).map((cycle, index) => (cycle - counted[index]!) * intervalMinutes);
}

/**
 * How many of the run's refresh periods the window holds: a whole number when every gap the run
 * showed is the same period and divides the window; undefined when the gaps differ, do not divide
 * it, or the run refreshed only once (then the window's count depends on its phase, or is unknown).
 */
export function wholePeriods(windowMinutes: number, gapsMinutes: readonly number[]): number | undefined {
  const period = gapsMinutes[0];
  if (period === undefined || period <= 0 || gapsMinutes.some((gap) => gap !== period) || windowMinutes % period !== 0) return undefined;
  return windowMinutes / period;
}

/**
 * Upstream calls per hour over a long run: the window's calls per hour, plus the domain discoveries
 * the run made before the window when none fell in it (they are cached for `discoveryTtlMinutes`,
 * longer than the run, so they recur once per TTL). Where instances discover for themselves the
 * window already holds their ListInstanceEndpoint calls, and nothing is added.
 */
export function longRunUpstreamPerHour(
  window: { byApi: Readonly<Record<string, number>>; minutes: number },
  discoveriesBeforeWindow: number,
  discoveryTtlMinutes: number,
): number {
  const calls = Object.values(window.byApi).reduce((sum, n) => sum + n, 0);
  const inWindow = (calls * 60) / window.minutes;
  if ((window.byApi["cr:ListInstanceEndpoint"] ?? 0) > 0) return inWindow;
  return inWindow + (discoveriesBeforeWindow * 60) / discoveryTtlMinutes;
}
