import { describe, expect, it } from "vitest";
import { parseRefresherConfig, type RefresherConfig } from "../../job/config.ts";
import { diffServiceAccount, namespacesToRead, plan, type NamespaceInfo, type PlanInput, type ServiceAccountInfo } from "../../job/plan.ts";
import { annotations, type DesiredSecret } from "../../job/secret.ts";
import { emptyState, nextState, type RefresherState } from "../../job/state.ts";
import { secretsOf } from "./desired-secrets.ts";

const registryInfo = "- instanceId: cri-one\n  regionId: cn-hangzhou\n- instanceId: cri-two\n  regionId: cn-beijing";

function configOf(extra: Record<string, string> = {}): RefresherConfig {
  return parseRefresherConfig({ "broker-url": "https://broker.example.com", "acr-registry-info": registryInfo, "watch-namespace": "all", ...extra }).config;
}

const ns = (name: string, extra: Partial<NamespaceInfo> = {}): NamespaceInfo => ({
  name,
  uid: `${name}-uid-0000`,
  terminating: false,
  annotations: {},
  ...extra,
});
const sa = (namespace: string, name: string, pullSecrets: string[] = [], extra: Partial<ServiceAccountInfo> = {}): ServiceAccountInfo => ({
  namespace,
  name,
  resourceVersion: "7",
  imagePullSecrets: pullSecrets.map((secret) => ({ name: secret })),
  annotations: {},
  ...extra,
});

function input(config: RefresherConfig, overrides: Partial<PlanInput> = {}): PlanInput {
  return {
    config,
    secrets: secretsOf(config),
    namespaces: [ns("default"), ns("team-a")],
    serviceAccounts: [sa("default", "default"), sa("team-a", "default")],
    state: emptyState(),
    ...overrides,
  };
}

/** The state the refresher would remember after every Secret of `p` was applied. */
function stateAfter(
  p: ReturnType<typeof plan>,
  secrets: Map<string, DesiredSecret>,
  namespaces: NamespaceInfo[],
  previous: RefresherState = emptyState(),
): RefresherState {
  const uids = new Map(namespaces.map((n) => [n.name, n.uid]));
  return nextState(
    previous,
    p.namespaces.flatMap((n) =>
      n.apply.map((item) => {
        const desired = secrets.get(item.secret) as DesiredSecret;
        return {
          kind: "applied" as const,
          secret: item.secret,
          namespace: n.namespace,
          uid: uids.get(n.namespace) ?? "",
          fingerprint: desired.fingerprint,
          expiresAt: desired.expiresAt,
          secretUid: `uid-of-${item.secret}-in-${n.namespace}`,
        };
      }),
    ),
  );
}

describe("plan", () => {
  it("applies again a Secret it believes current when the kubelet could not find it, there only", () => {
    const config = configOf();
    const [one] = config.registries.map((r) => r.secretName) as [string, string];
    const first = input(config);
    const names = config.registries.map((r) => r.secretName);
    const accounts = first.serviceAccounts.map((account) => ({
      ...account,
      imagePullSecrets: names.map((name) => ({ name })),
      annotations: { [annotations.managedPullSecrets]: names.join(",") },
    }));
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const p = plan({ ...first, serviceAccounts: accounts, state, reapply: new Map([["team-a", new Set([one])]]) });
    expect(p.namespaces.map((n) => [n.namespace, n.apply])).toEqual([["team-a", [{ secret: one, reason: "missing" }]]]);
  });

  it("on a fresh cluster applies one Secret per registry in every chosen namespace and adds both to the ServiceAccount", () => {
    const config = configOf();
    const [one, two] = config.registries.map((r) => r.secretName) as [string, string];
    const p = plan(input(config));
    expect(p.namespaces.map((n) => n.namespace)).toEqual(["default", "team-a"]);
    for (const n of p.namespaces) {
      expect(n.apply).toEqual([
        { secret: one, reason: "new" },
        { secret: two, reason: "new" },
      ]);
      expect(n.serviceAccounts).toEqual([expect.objectContaining({ name: "default", add: [one, two], remove: [] })]);
      expect(n.delete).toEqual([]);
    }
  });

  it("plans nothing at all when run again with unchanged credentials", () => {
    const config = configOf();
    const first = input(config);
    const firstPlan = plan(first);
    const names = config.registries.map((r) => r.secretName);
    const accounts = first.serviceAccounts.map((account) => ({
      ...account,
      imagePullSecrets: names.map((name) => ({ name })),
      annotations: { [annotations.managedPullSecrets]: names.join(",") },
    }));
    const second = plan({
      ...first,
      serviceAccounts: accounts,
      state: stateAfter(firstPlan, first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]),
    });
    expect(second.namespaces).toEqual([]);
  });

  it("re-applies every Secret when the credentials change, without touching ServiceAccounts that already list them", () => {
    const config = configOf();
    const first = input(config);
    const names = config.registries.map((r) => r.secretName);
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const accounts = first.serviceAccounts.map((account) => ({
      ...account,
      imagePullSecrets: names.map((name) => ({ name })),
      annotations: { [annotations.managedPullSecrets]: names.join(",") },
    }));
    const p = plan({ ...first, secrets: secretsOf(config, "pw-2"), serviceAccounts: accounts, state });
    expect(p.namespaces).toHaveLength(2);
    for (const n of p.namespaces) {
      expect(n.apply.map((a) => a.reason)).toEqual(["changed", "changed"]);
      expect(n.serviceAccounts).toEqual([]);
    }
  });

  it("re-applies a Secret it believes current when a chosen ServiceAccount lacks it (a new or reset ServiceAccount)", () => {
    const config = configOf();
    const first = input(config);
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const names = config.registries.map((r) => r.secretName);
    const full = { imagePullSecrets: names.map((name) => ({ name })), annotations: { [annotations.managedPullSecrets]: names.join(",") } };
    const p = plan({ ...first, state, serviceAccounts: [sa("default", "default", [], full), sa("team-a", "default")] });
    expect(p.namespaces.map((n) => n.namespace)).toEqual(["team-a"]);
    expect(p.namespaces[0]?.apply.map((a) => a.reason)).toEqual(["repair", "repair"]);
  });

  it("treats a namespace re-created under the same name as new", () => {
    const config = configOf();
    const first = input(config);
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const p = plan({ ...first, state, namespaces: [ns("default"), ns("team-a", { uid: "other-uid" })], serviceAccounts: [] });
    expect(p.namespaces.map((n) => [n.namespace, n.apply.map((a) => a.reason)])).toEqual([["team-a", ["new", "new"]]]);
    expect(p.forget.filter((f) => f.namespace === "team-a")).toHaveLength(2);
  });

  it("adds its entries after the foreign ones and never plans to remove a foreign entry", () => {
    const config = configOf();
    const p = plan(
      input(config, {
        namespaces: [ns("team-a")],
        serviceAccounts: [sa("team-a", "default", ["corp-pull", "acr-credential-0123456789abcdef0123456789abcdef"])],
      }),
    );
    const edit = p.namespaces[0]?.serviceAccounts[0];
    expect(edit?.add).toEqual(config.registries.map((r) => r.secretName));
    expect(edit?.remove).toEqual([]);
  });

  it("skips excluded, annotated and terminating namespaces and reports why", () => {
    const config = configOf({ "exclude-namespace": "kube-system" });
    const p = plan(
      input(config, {
        namespaces: [ns("kube-system"), ns("quiet", { annotations: { [annotations.exclude]: "true" } }), ns("leaving", { terminating: true }), ns("team-a")],
        serviceAccounts: [sa("kube-system", "default"), sa("quiet", "default"), sa("leaving", "default"), sa("team-a", "default")],
      }),
    );
    expect(p.namespaces.map((n) => n.namespace)).toEqual(["team-a"]);
    expect(p.skipped).toEqual([
      { namespace: "kube-system", reason: "excluded" },
      { namespace: "leaving", reason: "terminating" },
      { namespace: "quiet", reason: "annotated" },
    ]);
  });

  it("serves only the listed namespaces and reports listed ones that do not exist", () => {
    const config = configOf({ "watch-namespace": "team-a,missing" });
    const p = plan(input(config));
    expect(p.namespaces.map((n) => n.namespace)).toEqual(["team-a"]);
    expect(p.skipped).toEqual([{ namespace: "missing", reason: "not-found" }]);
  });

  it("with service-account '*' edits every ServiceAccount; with a list only the listed ones", () => {
    const accounts = [sa("team-a", "default"), sa("team-a", "builder"), sa("team-a", "other")];
    const all = plan(input(configOf({ "service-account": "*" }), { namespaces: [ns("team-a")], serviceAccounts: accounts }));
    expect(all.namespaces[0]?.serviceAccounts.map((e) => e.name)).toEqual(["default", "builder", "other"]);
    const some = plan(input(configOf({ "service-account": "builder,other" }), { namespaces: [ns("team-a")], serviceAccounts: accounts }));
    expect(some.namespaces[0]?.serviceAccounts.map((e) => e.name)).toEqual(["builder", "other"]);
  });

  it("when a registry is removed, deletes its Secret and removes only the refresher's own entry for it", () => {
    const before = configOf();
    const [kept, removed] = before.registries.map((r) => r.secretName) as [string, string];
    const first = input(before, { namespaces: [ns("team-a")], serviceAccounts: [sa("team-a", "default")] });
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const after = configOf({ "acr-registry-info": "- instanceId: cri-one\n  regionId: cn-hangzhou" });
    const account = sa("team-a", "default", ["corp-pull", kept, removed], { annotations: { [annotations.managedPullSecrets]: `${kept},${removed}` } });
    const p = plan({ ...first, config: after, secrets: secretsOf(after), serviceAccounts: [account], state });
    expect(p.namespaces).toHaveLength(1);
    expect(p.namespaces[0]?.apply).toEqual([]);
    expect(p.namespaces[0]?.serviceAccounts).toEqual([expect.objectContaining({ add: [], remove: [removed] })]);
    expect(p.namespaces[0]?.delete).toEqual([removed]);
  });

  it("never deletes a Secret named on a ServiceAccount's annotation unless it has the refresher's name shape", () => {
    const config = configOf();
    const names = config.registries.map((r) => r.secretName);
    const account = sa("team-a", "default", [...names, "precious"], { annotations: { [annotations.managedPullSecrets]: [...names, "precious"].join(",") } });
    const state = stateAfter(plan(input(config, { namespaces: [ns("team-a")] })), secretsOf(config), [ns("team-a")]);
    const p = plan(input(config, { namespaces: [ns("team-a")], serviceAccounts: [account], state }));
    expect(p.namespaces[0]?.delete ?? []).not.toContain("precious");
  });

  it("cleans up a namespace that is no longer chosen", () => {
    const config = configOf();
    const first = input(config);
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const names = config.registries.map((r) => r.secretName);
    const managed = { annotations: { [annotations.managedPullSecrets]: names.join(",") } };
    const narrowed = configOf({ "watch-namespace": "default" });
    const p = plan({
      ...first,
      config: narrowed,
      state,
      serviceAccounts: [sa("default", "default", names, managed), sa("team-a", "default", ["corp", ...names], managed)],
    });
    expect(p.namespaces).toEqual([expect.objectContaining({ namespace: "team-a", chosen: false, apply: [], delete: [...names].sort() })]);
    expect(p.namespaces[0]?.serviceAccounts[0]?.remove).toEqual(names);
  });

  it("keeps serving a Secret it holds when the broker failed for that registry, and does not add one it never wrote", () => {
    const config = configOf();
    const [one, two] = config.registries.map((r) => r.secretName) as [string, string];
    const onlyOne = new Map([...secretsOf(config)].filter(([name]) => name === one));
    const first = input(config, { namespaces: [ns("team-a")], serviceAccounts: [] });
    const state = stateAfter(plan({ ...first, secrets: onlyOne }), onlyOne, [ns("team-a")]);
    const p = plan({ ...first, secrets: new Map(), state, serviceAccounts: [sa("team-a", "default")] });
    expect(p.namespaces[0]?.apply).toEqual([]);
    expect(p.namespaces[0]?.serviceAccounts[0]?.add).toEqual([one]);
    expect(p.namespaces[0]?.serviceAccounts[0]?.add).not.toContain(two);
    expect(p.namespaces[0]?.delete).toEqual([]);
  });

  it("in watch mode plans only the namespaces in scope", () => {
    const config = configOf();
    const p = plan(input(config, { scope: new Set(["team-a"]) }));
    expect(p.namespaces.map((n) => n.namespace)).toEqual(["team-a"]);
  });

  it("with resync applies Secrets the state says are current", () => {
    const config = configOf();
    const first = input(config);
    const state = stateAfter(plan(first), first.secrets as Map<string, DesiredSecret>, first.namespaces as NamespaceInfo[]);
    const names = config.registries.map((r) => r.secretName);
    const accounts = first.serviceAccounts.map((account) => ({ ...account, imagePullSecrets: names.map((name) => ({ name })) }));
    const p = plan({ ...first, state, serviceAccounts: accounts, resync: true });
    expect(p.namespaces.flatMap((n) => n.apply.map((a) => a.reason))).toEqual(["resync", "resync", "resync", "resync"]);
  });
});

describe("namespacesToRead", () => {
  it("reads chosen namespaces and the ones the refresher still holds Secrets in", () => {
    const config = configOf({ "watch-namespace": "team-a" });
    const state = nextState(emptyState(), [
      { kind: "applied", secret: "acr-credential-x", namespace: "old", uid: "old-uid-0000", fingerprint: "f", expiresAt: "2030-01-01T00:00:00Z" },
    ]);
    const read = namespacesToRead(config, [ns("team-a"), ns("old"), ns("other")], state);
    expect(read).toEqual({ names: ["team-a", "old"], clusterWide: false });
    expect(namespacesToRead(configOf(), [ns("a")], emptyState()).clusterWide).toBe(true);
  });
});

describe("diffServiceAccount", () => {
  it("adds what is missing and removes only entries the annotation says the refresher added", () => {
    const account = sa("n", "default", ["corp", "acr-credential-old", "acr-credential-keep"], {
      annotations: { [annotations.managedPullSecrets]: "acr-credential-old,acr-credential-keep" },
    });
    expect(diffServiceAccount(account, ["acr-credential-keep", "acr-credential-new"], ["acr-credential-keep", "acr-credential-new"])).toEqual({
      add: ["acr-credential-new"],
      remove: ["acr-credential-old"],
    });
  });
});
