import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { ApplyResult } from "../../job/apply.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { emptyState } from "../../job/state.ts";
import { exitCodeOf, runResult, statusData } from "../../job/status.ts";

const [registry] = parseRefresherConfig({ "broker-url": "https://b.example", "acr-registry-info": "- instanceId: cri-s\n  regionId: cn-hangzhou" }).config
  .registries;
const clean = (): ApplyResult => ({
  outcomes: [],
  failures: [],
  conflicts: [],
  counts: { secretsApplied: 2, serviceAccountsPatched: 1, secretsDeleted: 0, namespacesFailed: 0 },
});
const base = { finishedAt: new Date("2030-01-01T00:00:00Z"), durationMs: 1234, mode: "once" as const, namespacesServed: 2, state: emptyState() };

describe("status ConfigMap", () => {
  it("says Succeeded and exit 0 when nothing failed", () => {
    const input = { ...base, registries: [{ registry: registry!, expiresAt: "2030-01-01T01:00:00Z" }], result: clean() };
    expect(runResult(input)).toBe("Succeeded");
    expect(exitCodeOf(runResult(input))).toBe(0);
    const data = statusData(input);
    expect(data["last-run"]).toBe("2030-01-01T00:00:00.000Z");
    expect(parseYaml(data.registries as string)).toEqual([{ registry: "cri-s@cn-hangzhou", secret: registry!.secretName, expiresAt: "2030-01-01T01:00:00Z" }]);
    expect(parseYaml(data.summary as string)).toMatchObject({ namespacesServed: 2, secretsApplied: 2, serviceAccountsPatched: 1, failures: 0 });
  });

  it("says PartiallyFailed and exit 1 for a conflict, a failed namespace or a registry without credentials", () => {
    const conflict = { ...clean(), conflicts: [{ namespace: "a", secret: "s", kind: "exists" as const, message: "m" }] };
    expect(runResult({ registries: [], result: conflict })).toBe("PartiallyFailed");
    const failure = { ...clean(), failures: [{ namespace: "a", kind: "Secret" as const, name: "s", code: "KubernetesError", message: "m" }] };
    expect(runResult({ registries: [], result: failure })).toBe("PartiallyFailed");
    expect(runResult({ registries: [{ registry: registry!, error: { code: "UpstreamThrottled", message: "m" } }], result: clean() })).toBe("PartiallyFailed");
    expect(exitCodeOf("PartiallyFailed")).toBe(1);
  });

  it("says Failed when the broker could not be reached and nothing was written", () => {
    const nothing = { ...clean(), counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 } };
    expect(runResult({ registries: [], result: nothing, brokerError: { code: "BrokerUnreachable", message: "m" } })).toBe("Failed");
  });

  it("lists at most 50 failures and says how many more there were", () => {
    const many = {
      ...clean(),
      failures: Array.from({ length: 70 }, (_, i) => ({ namespace: `ns-${i}`, kind: "Secret" as const, name: "s", code: "KubernetesError", message: "m" })),
    };
    const listed = parseYaml(statusData({ ...base, registries: [], result: many }).failures as string) as unknown[];
    expect(listed).toHaveLength(51);
    expect(listed[50]).toEqual({ more: 20 });
  });
});
