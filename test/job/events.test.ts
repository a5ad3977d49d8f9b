import { describe, expect, it } from "vitest";
import { nothingApplied } from "../../job/apply.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { eventReasons, heartbeat, namedEvent, observeSeries, runEvents, seriesFinishMs, seriesHeartbeatMs, type SeriesEntry } from "../../job/events.ts";

const [cri, personal] = parseRefresherConfig({
  "broker-url": "https://b.example",
  "acr-registry-info": "- instanceId: cri-ev\n  regionId: cn-hangzhou\n- regionId: cn-shanghai",
}).config.registries;
const clean = nothingApplied;
const configMap = { namespace: "kube-system", name: "acr-configuration", uid: "cm-uid" };

describe("an Event's series, as client-go's recorder keeps it", () => {
  const minute = 60_000;

  it("creates the Event on the first observation, writes count 2 on the second, then only counts", () => {
    const first = observeSeries(undefined, 0);
    expect(first.step).toEqual({ write: "create" });
    const second = observeSeries({ ...first.entry, written: 1 }, minute);
    expect(second).toEqual({ entry: { count: 2, written: 1, lastObservedMs: minute, lastWrittenMs: 0 }, step: { write: "series" } });
    let entry: SeriesEntry = { ...second.entry, written: 2, lastWrittenMs: minute };
    for (let at = 2; at < 10; at += 1) {
      const next = observeSeries(entry, at * minute);
      expect(next.step).toEqual({ write: "none" });
      entry = next.entry;
    }
    expect(entry.count).toBe(10);
  });

  it("writes a count it holds back on the 30-minute heartbeat, and not before", () => {
    const entry: SeriesEntry = { count: 7, written: 2, lastObservedMs: seriesHeartbeatMs - 1000, lastWrittenMs: 0 };
    expect(heartbeat(entry, seriesHeartbeatMs - 2000)).toEqual({ write: false, forget: false });
    expect(heartbeat(entry, seriesHeartbeatMs)).toEqual({ write: true, forget: false });
  });

  it("ends a series not observed for 6 minutes: writes what it held back, then forgets it, so the next observation is a new Event", () => {
    const entry: SeriesEntry = { count: 5, written: 2, lastObservedMs: 0, lastWrittenMs: 0 };
    expect(heartbeat(entry, seriesFinishMs - 1)).toEqual({ write: false, forget: false });
    expect(heartbeat(entry, seriesFinishMs)).toEqual({ write: true, forget: true });
    expect(heartbeat({ ...entry, written: 5 }, seriesFinishMs)).toEqual({ write: false, forget: true });
    // A single observation never gets a series (events.k8s.io wants count >= 2).
    expect(heartbeat({ count: 1, written: 1, lastObservedMs: 0, lastWrittenMs: 0 }, seriesHeartbeatMs * 2)).toEqual({ write: false, forget: true });
  });
});

describe("the Events of a run, on the configuration ConfigMap", () => {
  it("names each registry the broker refused, with its code, and nothing else when the rest succeeded", () => {
    const events = runEvents(
      {
        registries: [
          { registry: cri!, error: { code: "Forbidden", message: "not allowed for this cluster" } },
          { registry: personal!, expiresAt: "2030-01-01T00:00:00Z" },
        ],
        result: clean(),
      },
      configMap,
    );
    expect(events).toEqual([
      expect.objectContaining({
        namespace: "kube-system",
        reason: eventReasons.registryRefused,
        regarding: { kind: "ConfigMap", name: "acr-configuration", uid: "cm-uid" },
        note: expect.stringMatching(/registry cri-ev@cn-hangzhou \(Secret acr-credential-[0-9a-f]{32}\): Forbidden: not allowed for this cluster/),
      }),
    ]);
  });

  it("says RefreshFailed once, not once per registry, when no credential came at all", () => {
    const brokerError = { code: "BrokerUnreachable", message: "cannot reach the broker" };
    const events = runEvents({ registries: [cri!, personal!].map((registry) => ({ registry, error: brokerError })), brokerError, result: clean() }, configMap);
    expect(events.map((event) => event.reason)).toEqual([eventReasons.refreshFailed]);
    expect(events[0]?.note).toMatch(
      /^no credential could be fetched: BrokerUnreachable: cannot reach the broker; ConfigMap kube-system\/acr-credential-status has the details$/,
    );
  });

  it("says WritesFailed naming the namespaces, when writes failed", () => {
    const failures = ["a", "b", "a"].map((namespace) => ({ namespace, kind: "Secret" as const, name: "s", code: "KubernetesError", message: "m" }));
    const events = runEvents({ registries: [], result: { ...clean(), failures } }, configMap);
    expect(events).toEqual([
      expect.objectContaining({
        reason: eventReasons.writesFailed,
        note: expect.stringMatching(/^writes failed in a, b \(first: Secret a\/s: KubernetesError\)/),
      }),
    ]);
  });

  it("writes nothing for a run that succeeded", () => {
    expect(runEvents({ registries: [{ registry: cri!, expiresAt: "2030-01-01T00:00:00Z" }], result: clean() }, configMap)).toEqual([]);
  });

  it("gives the same problem on the same object the same name, another to an object created again under its name, and cuts a long note to the API's 1 kB", () => {
    const event = { namespace: "ns", reason: "R", action: "A", note: "x".repeat(1500), regarding: { kind: "ConfigMap", name: "c", uid: "u1" } };
    expect(namedEvent(event).name).toBe(namedEvent({ ...event }).name);
    expect(namedEvent(event).name).not.toBe(namedEvent({ ...event, regarding: { ...event.regarding, uid: "u2" } }).name);
    expect(namedEvent(event).name).not.toBe(namedEvent({ ...event, reason: "Other" }).name);
    expect(namedEvent(event).note).toHaveLength(1000);
  });
});
