import { describe, expect, it } from "vitest";
import type { ApplyResult } from "../../job/apply.ts";
import { parseRefresherConfig } from "../../job/config.ts";
import { brokerOutcome, parseMetricsAddress, statusFigures } from "../../job/metrics.ts";
import { emptyState } from "../../job/state.ts";
import { AcrCredentialError } from "../../shared/errors.ts";

const [cri, personal] = parseRefresherConfig({ "broker-url": "https://b.example", "acr-registry-info": "- instanceId: cri-m\n  regionId: cn-hangzhou\n- regionId: cn-shanghai" }).config.registries;
const clean = (): ApplyResult => ({ outcomes: [], failures: [], conflicts: [], counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 0 } });

describe("--metrics-addr", () => {
  it("takes [HOST]:PORT, an IPv6 host in brackets, and 0 to switch the server off", () => {
    expect(parseMetricsAddress(":9102")).toEqual({ host: "", port: 9102 });
    expect(parseMetricsAddress("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
    expect(parseMetricsAddress("[::1]:9102")).toEqual({ host: "::1", port: 9102 });
    expect(parseMetricsAddress("0")).toBeUndefined();
  });

  it.each(["9102", "localhost", ":70000", "http://0.0.0.0:9102", ""])("refuses %j with a UsageError naming the form", (value) => {
    expect(() => parseMetricsAddress(value)).toThrow(expect.objectContaining({ code: "UsageError", message: expect.stringMatching(/--metrics-addr must be \[HOST\]:PORT such as :9102/) }));
  });
});

describe("a broker call's outcome", () => {
  it("is `refused` with the broker's code for a 4xx answer, and `error` when the broker could not answer", () => {
    expect(brokerOutcome(new AcrCredentialError("Forbidden", "m", { details: { status: 403 } }))).toEqual({ outcome: "refused", code: "Forbidden" });
    expect(brokerOutcome(new AcrCredentialError("RateLimited", "m", { details: { status: 429 } }))).toEqual({ outcome: "refused", code: "RateLimited" });
    expect(brokerOutcome(new AcrCredentialError("UpstreamUnavailable", "m", { details: { status: 503 } }))).toEqual({ outcome: "error", code: "UpstreamUnavailable" });
    expect(brokerOutcome(new AcrCredentialError("BrokerUnreachable", "m"))).toEqual({ outcome: "error", code: "BrokerUnreachable" });
    expect(brokerOutcome(new TypeError("x"))).toEqual({ outcome: "error", code: "Internal" });
  });
});

describe("the figures of a status", () => {
  it("count a namespace once however many problems it has, and leave out leftovers that serve nobody less", () => {
    const result: ApplyResult = {
      ...clean(),
      failures: [{ namespace: "a", kind: "Secret", name: "s", code: "KubernetesError", message: "m" }],
      conflicts: [
        { namespace: "a", secret: "s", kind: "exists", message: "m" },
        { namespace: "b", secret: "s", kind: "applied", serviceAccount: "app", message: "m" },
        { namespace: "c", secret: "s", kind: "unrecorded", message: "m" },
      ],
    };
    const figures = statusFigures({ finishedAt: new Date("2030-01-01T00:00:10Z"), durationMs: 1, mode: "watch", registries: [], namespacesServed: 5, result, state: emptyState() });
    expect(figures).toMatchObject({ result: "PartiallyFailed", finishedAtSeconds: Date.parse("2030-01-01T00:00:10Z") / 1000, namespacesServed: 5, namespacesFailed: 2, conflicts: { exists: 1, applied: 1, unrecorded: 1, replaced: 0 } });
  });

  it("give each registry with a credential its expiry in seconds, under its label and Secret name", () => {
    const figures = statusFigures({ finishedAt: new Date(0), durationMs: 1, mode: "watch", registries: [{ registry: cri!, expiresAt: "2030-01-01T01:00:00Z" }, { registry: personal!, error: { code: "Forbidden", message: "m" } }], namespacesServed: 0, result: clean(), state: emptyState() });
    expect(figures.expiries).toEqual([{ registry: "cri-m@cn-hangzhou", secret: cri!.secretName, seconds: Date.parse("2030-01-01T01:00:00Z") / 1000 }]);
  });
});
