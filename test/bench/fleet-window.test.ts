/** The fleet benchmark's measured windows: whole periods of what drives upstream calls, and the long-run rate. */
import { describe, expect, it } from "vitest";
import { fleetConfigs, fleetDefaults } from "../../bench/fleet-bench.ts";
import { economyWantsCall } from "../../bench/fleet-schedule.ts";
import { longRunUpstreamPerHour, measuredWindow, refreshGapsMinutes, wholePeriods } from "../../bench/fleet-window.ts";
import { brokerConfigSchema } from "../../functions/broker/config.ts";

const byKey = (key: string) => fleetConfigs.find((c) => c.key === key)!;
const minute = 60_000;

/** The broker's default `refreshBeforeExpirySeconds`, as it reads a configuration without it. */
const refreshBeforeExpirySeconds = brokerConfigSchema.parse({
  audience: "a",
  clusters: [{ name: "c", issuer: "https://i.example", jwks: { keys: [{ kty: "EC" }] }, subjects: ["s"] }],
}).refreshBeforeExpirySeconds;

/** The first `*\/5` run at which a one-hour credential is renewed, by the broker's rule or the refresher's. */
const firstGridMinute = (due: (minutes: number) => boolean) => {
  for (let m = fleetDefaults.intervalMinutes; ; m += fleetDefaults.intervalMinutes) if (due(m)) return m;
};
const brokerPeriod = firstGridMinute((m) => 60 * 60 - m * 60 <= refreshBeforeExpirySeconds);
const refresherPeriod = firstGridMinute((m) =>
  economyWantsCall(60 * minute, m * minute, { thresholdMs: 15 * minute, intervalMs: fleetDefaults.intervalMinutes * minute }),
);

describe("a configuration's measured window", () => {
  it("follows cold starts where nothing survives a cycle, the broker's renewals where a shared cache or kept instance carries state, the refreshers' with the economy", () => {
    const windows = Object.fromEntries(fleetConfigs.map((c) => [c.key, measuredWindow(c, fleetDefaults)]));
    expect(windows.builtIn).toEqual({ follows: "coldStarts", minutes: fleetDefaults.measuredMinutes });
    expect(windows.custom).toEqual({ follows: "coldStarts", minutes: fleetDefaults.measuredMinutes });
    for (const key of ["builtInSharedCache", "customSharedCache", "customProvisionedSharedCache"])
      expect(windows[key]).toEqual({ follows: "brokerRenewals", minutes: fleetDefaults.brokerRenewalMeasuredMinutes });
    for (const c of fleetConfigs.filter((c) => c.economy))
      expect(windows[c.key]).toEqual({ follows: "refresherRenewals", minutes: fleetDefaults.economyMeasuredMinutes });
    // Instances that outlive the interval keep their caches: the broker's renewals then drive even the built-in runtime.
    expect(measuredWindow(byKey("builtIn"), { ...fleetDefaults, idleSeconds: 600 }).follows).toBe("brokerRenewals");
  });

  it("holds a whole number of the periods one-hour credentials give: 45 minutes for the broker's renewals, 40 for the refreshers'", () => {
    expect([brokerPeriod, refresherPeriod]).toEqual([45, 40]);
    expect(fleetDefaults.brokerRenewalMeasuredMinutes % brokerPeriod).toBe(0);
    expect(fleetDefaults.economyMeasuredMinutes % refresherPeriod).toBe(0);
    expect(fleetDefaults.measuredMinutes % fleetDefaults.intervalMinutes).toBe(0);
    // One hour would not: it holds one or two of the broker's renewals depending on its phase.
    expect(60 % brokerPeriod).not.toBe(0);
  });

  it("counts the long-run rate whatever the window's phase; an hour's window counted 3 or 6", () => {
    const ratePerPhase = (windowMinutes: number) =>
      Array.from({ length: brokerPeriod / 5 }, (_, i) => {
        // Renewals every 45 minutes from phase 5i; the window is [0, windowMinutes).
        const renewals = Array.from({ length: 20 }, (_, k) => i * 5 + k * brokerPeriod).filter((at) => at < windowMinutes).length;
        return longRunUpstreamPerHour({ byApi: { "sts:AssumeRole": renewals, "cr:GetAuthorizationToken": 2 * renewals }, minutes: windowMinutes }, 0, 360);
      });
    expect(new Set(ratePerPhase(fleetDefaults.brokerRenewalMeasuredMinutes))).toEqual(new Set([4]));
    expect(new Set(ratePerPhase(60))).toEqual(new Set([3, 6]));
  });
});

describe("the periods a run shows", () => {
  const start = 1_000_000;

  it("takes the minutes between the cycles that refreshed, several AssumeRole in one cycle being one refresh", () => {
    const times = [start + 2_000, start + 9_000, start + 45 * minute + 3_000, start + 90 * minute + 1_000, start + 135 * minute + 8_000];
    expect(refreshGapsMinutes(times, start, 5)).toEqual([45, 45, 45]);
    expect(refreshGapsMinutes([start + 5_000], start, 5)).toEqual([]);
  });

  it("counts from the last refresh before the window: a light warm-up's late first renewal does not decide the window", () => {
    // Filled at 0, renewed at 50 in the warm-up (its ten requests all came before the credential was due), then every 45.
    const times = [0, 50, 95, 140, 185, 230].map((m) => start + m * minute + 1_000);
    expect(refreshGapsMinutes(times, start, 5)).toEqual([50, 45, 45, 45, 45]);
    expect(refreshGapsMinutes(times, start, 5, start + 60 * minute)).toEqual([45, 45, 45, 45]);
    expect(wholePeriods(180, refreshGapsMinutes(times, start, 5, start + 60 * minute))).toBe(4);
  });

  it("says how many periods the window holds only when every gap is the same and divides it", () => {
    expect(wholePeriods(180, [45, 45, 45, 45, 45])).toBe(4);
    expect(wholePeriods(240, [40, 40, 40])).toBe(6);
    expect(wholePeriods(60, [5, 5, 5])).toBe(12);
    expect(wholePeriods(60, [45])).toBeUndefined();
    expect(wholePeriods(180, [45, 50, 45])).toBeUndefined();
    expect(wholePeriods(180, [])).toBeUndefined();
  });
});

describe("the long-run upstream rate", () => {
  it("adds the discovery made before the window once per TTL when the window holds none", () => {
    const rate = longRunUpstreamPerHour({ byApi: { "sts:AssumeRole": 4, "cr:GetAuthorizationToken": 8 }, minutes: 180 }, 2, 360);
    expect(rate).toBeCloseTo(4 + 1 / 3, 10);
    expect(longRunUpstreamPerHour({ byApi: { "sts:AssumeRole": 6, "cr:GetAuthorizationToken": 18 }, minutes: 240 }, 0, 360)).toBe(6);
  });

  it("adds nothing where instances discover for themselves: their calls are in the window already", () => {
    const byApi = { "sts:AssumeRole": 12, "cr:GetAuthorizationToken": 24, "cr:ListInstanceEndpoint": 24 };
    expect(longRunUpstreamPerHour({ byApi, minutes: 60 }, 2, 360)).toBe(60);
  });
});
