import { describe, expect, it } from "vitest";
import {
  brokerNeed,
  brokerStatusData,
  credentialConfigHash,
  nextCallDue,
  parseBrokerMemory,
  rememberAnswer,
  type BrokerMemory,
  type NeedInput,
} from "../../job/broker-need.ts";
import { parseRefresherConfig, type RefresherConfig } from "../../job/config.ts";
import type { NamespaceInfo, ServiceAccountInfo } from "../../job/plan.ts";
import { emptyState, nextState, type RefresherState } from "../../job/state.ts";

const data = {
  "broker-url": "https://broker.example.com",
  "watch-namespace": "team-*",
  "service-account": "default",
  "acr-registry-info": "- instanceId: cri-needone\n  regionId: cn-hangzhou\n- instanceId: cri-needtwo\n  regionId: cn-beijing",
};
const config = parseRefresherConfig(data).config;
const [one, two] = config.registries.map((registry) => registry.secretName) as [string, string];

const now = new Date("2030-01-01T12:00:00Z");
const at = (minutesFromNow: number) => new Date(now.getTime() + minutesFromNow * 60_000).toISOString();
const namespace = (name: string): NamespaceInfo => ({ name, uid: `${name}-uid-0000`, terminating: false, annotations: {} });
const account = (ns: string, name: string, pullSecrets: string[]): ServiceAccountInfo => ({
  namespace: ns,
  name,
  resourceVersion: "1",
  imagePullSecrets: pullSecrets.map((secret) => ({ name: secret })),
  annotations: {},
});

/** The state after both Secrets were applied in these namespaces. */
function held(...names: string[]): RefresherState {
  return nextState(
    emptyState(),
    names.flatMap((name) =>
      [one, two].map((secret) => ({
        kind: "applied" as const,
        secret,
        namespace: name,
        uid: `${name}-uid-0000`,
        fingerprint: `f-${secret}`,
        expiresAt: at(60),
        secretUid: `${name}-${secret}-uid`,
      })),
    ),
  );
}
const memory = (expiries: Record<string, string>, of: RefresherConfig = config): BrokerMemory => ({
  version: 1,
  configHash: credentialConfigHash(of),
  expiries,
});

/** A cluster where everything is in place and both credentials expire in an hour. */
function steady(overrides: Partial<NeedInput> = {}): NeedInput {
  return {
    config,
    memory: memory({ [one]: at(60), [two]: at(60) }),
    state: held("team-a"),
    namespaces: [namespace("team-a"), namespace("kube-system"), namespace("other")],
    serviceAccounts: [account("team-a", "default", [one, two]), account("team-a", "builder", []), account("other", "default", [])],
    now,
    intervalSeconds: 300,
    resync: false,
    ...overrides,
  };
}
const codes = (input: NeedInput) => brokerNeed(input).reasons.map((reason) => reason.code);

describe("brokerNeed", () => {
  it("asks when the kubelet could not find a Secret the state says is in place (deleted by hand), for chosen namespaces only", () => {
    const need = brokerNeed(
      steady({
        missingSecrets: new Map([
          ["team-a", new Set([one])],
          ["other", new Set([one])],
        ]),
      }),
    );
    expect(need).toMatchObject({ call: true, reasons: [{ code: "secret-missing", subject: "team-a" }] });
    // Not a renewal: nothing is forced.
    expect(need.renew.size).toBe(0);
  });

  it("does not ask while every credential in hand is valid beyond threshold plus interval and every Secret is in place", () => {
    const need = brokerNeed(steady());
    expect(need).toMatchObject({ call: false, reasons: [] });
    expect(need.renew.size).toBe(0);
    // 15 min threshold + 5 min interval before the expiry an hour from now.
    expect(need.nextCallDueAt.toISOString()).toBe(at(40));
  });

  it("asks, with force, for a credential expiring within expiring-threshold plus one interval, and not a minute earlier", () => {
    expect(brokerNeed(steady({ memory: memory({ [one]: at(21), [two]: at(60) }) })).call).toBe(false);
    const need = brokerNeed(steady({ memory: memory({ [one]: at(20), [two]: at(60) }) }));
    expect(need.call).toBe(true);
    expect(need.reasons).toEqual([{ code: "expiring", subject: "cri-needone@cn-hangzhou" }]);
    expect([...need.renew]).toEqual([one]);
  });

  it("counts the interval from --schedule-interval: a 10 min schedule renews 25 min before expiry", () => {
    expect(brokerNeed(steady({ intervalSeconds: 600, memory: memory({ [one]: at(25), [two]: at(60) }) })).call).toBe(true);
    expect(brokerNeed(steady({ intervalSeconds: 600, memory: memory({ [one]: at(26), [two]: at(60) }) })).call).toBe(false);
  });

  it("asks when a registry has no credential in hand (the broker failed for it last time)", () => {
    expect(brokerNeed(steady({ memory: memory({ [one]: at(60) }) })).reasons).toEqual([{ code: "no-credential", subject: "cri-needtwo@cn-beijing" }]);
  });

  it("asks when a chosen namespace is not known to hold the Secrets, and ignores unchosen ones", () => {
    expect(brokerNeed(steady({ namespaces: [namespace("team-a"), namespace("team-new")] })).reasons).toEqual([
      { code: "namespace-lacks-secret", subject: "team-new" },
    ]);
    expect(brokerNeed(steady({ namespaces: [namespace("team-a"), namespace("unrelated")] })).call).toBe(false);
    expect(brokerNeed(steady({ namespaces: [namespace("team-a"), { ...namespace("team-gone"), terminating: true }] })).call).toBe(false);
  });

  it("treats a namespace re-created under the same name as lacking the Secrets", () => {
    expect(codes(steady({ namespaces: [{ ...namespace("team-a"), uid: "another-uid" }] }))).toEqual(["namespace-lacks-secret"]);
  });

  it("asks when a namespace holds only an older version (a failed update)", () => {
    const outdated = nextState(held("team-a", "team-b"), [
      { kind: "applied", secret: one, namespace: "team-a", uid: "team-a-uid-0000", fingerprint: "newer", expiresAt: at(60) },
    ]);
    expect(brokerNeed(steady({ state: outdated, namespaces: [namespace("team-a"), namespace("team-b")] })).reasons).toEqual([
      { code: "namespace-lacks-secret", subject: "team-b" },
    ]);
  });

  it("asks when a chosen ServiceAccount lacks an entry, not when an unchosen, opted-out or otherwise applied one does", () => {
    expect(brokerNeed(steady({ serviceAccounts: [account("team-a", "default", [one])] })).reasons).toEqual([
      { code: "service-account-lacks-secret", subject: "team-a/default" },
    ]);
    expect(brokerNeed(steady({ serviceAccounts: [account("team-a", "default", [one, two]), account("team-a", "builder", [])] })).call).toBe(false);
    expect(
      brokerNeed(steady({ serviceAccounts: [{ ...account("team-a", "default", []), annotations: { "acr-credential-broker/exclude": "true" } }] })).call,
    ).toBe(false);
    expect(brokerNeed(steady({ serviceAccounts: [{ ...account("team-a", "default", []), imagePullSecretsAppliers: ["helm"] }] })).call).toBe(false);
  });

  it("asks once to learn the uids of Secrets written before they were recorded (an upgrade)", () => {
    const withoutUids: RefresherState = {
      version: 1,
      secrets: Object.fromEntries(Object.entries(held("team-a").secrets).map(([name, record]) => [name, { ...record, uids: {} }])),
    };
    expect(brokerNeed(steady({ state: withoutUids })).reasons).toEqual([{ code: "secret-uid-unknown", subject: "team-a" }]);
  });

  it("asks when the registries, their domains, RRSA, the broker or the notify e-mail change, not when only the namespaces do", () => {
    const changed = (extra: Record<string, string>) => parseRefresherConfig({ ...data, ...extra }).config;
    const registries = changed({
      "acr-registry-info": "- instanceId: cri-needone\n  regionId: cn-hangzhou\n  expireDuration: 7200\n- instanceId: cri-needtwo\n  regionId: cn-beijing",
    });
    expect(codes(steady({ config: registries }))).toContain("config-changed");
    expect(codes(steady({ config: changed({ "broker-url": "https://other.example.com" }) }))).toContain("config-changed");
    expect(codes(steady({ config: changed({ rrsa: "enable: true" }) }))).toContain("config-changed");
    expect(codes(steady({ config: changed({ "notify-email": "ops@example.com" }) }))).toContain("config-changed");
    expect(brokerNeed(steady({ config: changed({ "watch-namespace": "team-a", "expiring-threshold": "10m" }) })).call).toBe(false);
  });

  it("asks again, whatever the expiries, when the run before was cut off while writing Secrets", () => {
    expect(codes(steady({ memory: { ...memory({ [one]: at(60), [two]: at(60) }), unfinished: true } }))).toEqual(["interrupted"]);
  });

  it("asks when the memory is missing or unreadable", () => {
    expect(codes(steady({ memory: undefined }))).toEqual(["memory-missing"]);
    expect(parseBrokerMemory("{not json")).toBeUndefined();
    expect(parseBrokerMemory(JSON.stringify({ version: 2, configHash: "x", expiries: {} }))).toBeUndefined();
    expect(parseBrokerMemory(undefined)).toBeUndefined();
  });

  it("asks and re-applies everything on --resync, and once per new value of the resync annotation", () => {
    expect(brokerNeed(steady({ resync: true }))).toMatchObject({ call: true, resync: true, reasons: [{ code: "resync", subject: "--resync" }] });
    const annotated = brokerNeed(steady({ resyncAnnotation: "1764600000" }));
    expect(annotated).toMatchObject({ call: true, resync: true, reasons: [{ code: "resync", subject: "acr-credential-broker/resync" }] });
    const remembered = { ...memory({ [one]: at(60), [two]: at(60) }), resync: "1764600000" };
    expect(brokerNeed(steady({ memory: remembered, resyncAnnotation: "1764600000" })).call).toBe(false);
  });

  it("lists at most five reasons of one kind, so a new cluster-wide selector does not list 2,000 namespaces", () => {
    const many = Array.from({ length: 50 }, (_, i) => namespace(`team-${i}`));
    const need = brokerNeed(steady({ namespaces: many }));
    expect(need.call).toBe(true);
    expect(need.reasons.filter((reason) => reason.code === "namespace-lacks-secret")).toHaveLength(5);
  });
});

describe("the broker memory", () => {
  it("remembers only credentials received, so a registry the broker failed for is asked for again", () => {
    const registries = config.registries;
    const remembered = rememberAnswer(
      config,
      [
        { registry: registries[0]!, expiresAt: at(60) },
        { registry: registries[1]!, error: { code: "UpstreamThrottled", message: "x" } },
      ],
      now,
      undefined,
    );
    expect(remembered.expiries).toEqual({ [one]: at(60) });
    expect(brokerNeed(steady({ memory: remembered })).reasons).toEqual([{ code: "no-credential", subject: "cri-needtwo@cn-beijing" }]);
    expect(parseBrokerMemory(JSON.stringify(remembered))).toEqual(remembered);
  });

  it("puts the next call at the earliest expiry minus threshold plus interval, or now when a registry has nothing in hand", () => {
    expect(nextCallDue(config.registries, { [one]: at(60), [two]: at(30) }, 1200, now).toISOString()).toBe(at(10));
    expect(nextCallDue(config.registries, { [one]: at(60) }, 1200, now)).toEqual(now);
  });

  it("shows in the status whether the run asked and why, the spread delay used and when the next call is due", () => {
    const status = brokerStatusData({
      need: { call: true, reasons: [{ code: "expiring", subject: "cri-needone@cn-hangzhou" }] },
      memory: memory({ [one]: at(60) }),
      nextCallDueAt: new Date(at(40)),
      spreadDelayMs: 37_400,
      spreadWindowMs: 120_000,
    });
    expect(status["broker-call"]).toBe('asked: true\nreasons:\n  - "expiring: cri-needone@cn-hangzhou"\n');
    expect(status["next-broker-call"]).toBe(at(40));
    expect(status["spread-delay"]).toBe("37s (window 2m)");
    expect(parseBrokerMemory(status["broker.json"])?.expiries).toEqual({ [one]: at(60) });
  });
});
