/** What the refresher may delete or re-apply, decided from its own records only (decision 005). */
import type { V1ServiceAccount } from "@kubernetes/client-node";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import type { Credential } from "../../shared/broker-api.ts";
import { conflictEvent } from "../../job/apply.ts";
import { brokerNeed, credentialConfigHash } from "../../job/broker-need.ts";
import { imagePullSecretsAppliers, serviceAccountInfo } from "../../job/cluster.ts";
import { parseRefresherConfig, type RefresherConfig } from "../../job/config.ts";
import { namespacesToRead, plan, type NamespaceInfo, type PlanInput, type ServiceAccountInfo } from "../../job/plan.ts";
import { annotations, desiredSecret, type DesiredSecret } from "../../job/secret.ts";
import { emptyState, nextState, parseState, secretUid, type RefresherState, type SecretOutcome } from "../../job/state.ts";
import { statusData } from "../../job/status.ts";

const registryInfo = "- instanceId: cri-one\n  regionId: cn-hangzhou\n- instanceId: cri-two\n  regionId: cn-beijing";
const configOf = (extra: Record<string, string> = {}): RefresherConfig =>
  parseRefresherConfig({ "broker-url": "https://broker.example.com", "acr-registry-info": registryInfo, "watch-namespace": "all", ...extra }).config;
const credential = (instanceId: string, regionId: string): Credential => ({
  instanceId,
  regionId,
  edition: "enterprise",
  domains: [`${instanceId}.example.com`],
  username: "u",
  password: "p",
  expiresAt: "2030-01-01T00:00:00Z",
});
const secretsOf = (config: RefresherConfig): Map<string, DesiredSecret> =>
  new Map(config.registries.map((r) => [r.secretName, desiredSecret(r, credential(r.instanceId ?? "", r.regionId ?? ""), undefined)]));
const ns = (name: string): NamespaceInfo => ({ name, uid: `${name}-uid-0000`, terminating: false, annotations: {} });
const sa = (namespace: string, name: string, pullSecrets: string[], extra: Partial<ServiceAccountInfo> = {}): ServiceAccountInfo => ({
  namespace,
  name,
  resourceVersion: "1",
  imagePullSecrets: pullSecrets.map((secret) => ({ name: secret })),
  annotations: {},
  ...extra,
});
const full = configOf();
const [one, two] = full.registries.map((r) => r.secretName) as [string, string];
const oneOnly = configOf({ "acr-registry-info": "- instanceId: cri-one\n  regionId: cn-hangzhou" });

function applied(secret: string, namespace: string, secretUidValue?: string): SecretOutcome {
  const desired = secretsOf(full).get(secret) as DesiredSecret;
  return {
    kind: "applied",
    secret,
    namespace,
    uid: `${namespace}-uid-0000`,
    fingerprint: desired.fingerprint,
    expiresAt: desired.expiresAt,
    ...(secretUidValue === undefined ? {} : { secretUid: secretUidValue }),
  };
}

function input(config: RefresherConfig, state: RefresherState, accounts: ServiceAccountInfo[], namespaces = [ns("team-a")]): PlanInput {
  return { config, secrets: secretsOf(config), namespaces, serviceAccounts: accounts, state };
}

const attached = (names: string[], extra: Partial<ServiceAccountInfo> = {}) =>
  sa("team-a", "default", names, { annotations: { [annotations.managedPullSecrets]: names.join(",") }, ...extra });

describe("ownership by uid", () => {
  it("remembers the uid its own apply returned, and forgets it with the Secret", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    expect(secretUid(state, one, "team-a", "team-a-uid-0000")).toBe("uid-1");
    expect(secretUid(state, one, "team-a", "another-namespace-uid")).toBeUndefined();
    expect(parseState(JSON.stringify(state))).toEqual(state);
    const forgotten = nextState(state, [{ kind: "foreign", secret: one, namespace: "team-a" }]);
    expect(secretUid(forgotten, one, "team-a", "team-a-uid-0000")).toBeUndefined();
  });

  it("deletes a removed registry's Secret only where it recorded the uid, and names that uid", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1"), applied(two, "team-a", "uid-2")]);
    const p = plan(input(oneOnly, state, [attached([one, two])]));
    expect(p.namespaces[0]).toMatchObject({ delete: [two], unrecorded: [], owned: { [one]: "uid-1", [two]: "uid-2" } });
    expect(p.namespaces[0]?.serviceAccounts[0]?.remove).toEqual([two]);
  });

  it("never deletes, nor detaches, a Secret that only a ServiceAccount annotation calls its own (a copied manifest)", () => {
    const copied = "acr-credential-0123456789abcdef0123456789abcdef";
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    const p = plan(input(oneOnly, state, [attached([copied, one])]));
    expect(p.namespaces[0]).toMatchObject({ delete: [], unrecorded: [copied], serviceAccounts: [] });
  });

  it("does not delete a Secret it remembers without a uid (written by an older version); it reports and forgets it", () => {
    const legacy = nextState(emptyState(), [applied(one, "team-a"), applied(two, "team-a")]);
    const p = plan(input(oneOnly, legacy, [attached([one, two])]));
    expect(p.namespaces[0]).toMatchObject({ delete: [], unrecorded: [two] });
    // Its own entry on the ServiceAccount goes (the state says it wrote it); the configured one is applied once to learn its uid.
    expect(p.namespaces[0]?.serviceAccounts[0]?.remove).toEqual([two]);
    expect(p.namespaces[0]?.apply).toEqual([{ secret: one, reason: "adopt" }]);
  });

  it("re-applies a Secret with the uid it recorded, so a replaced one is refused rather than written", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    const p = plan({ ...input(oneOnly, state, [attached([one])]), resync: true });
    expect(p.namespaces[0]).toMatchObject({ apply: [{ secret: one, reason: "resync" }], owned: { [one]: "uid-1" } });
  });
});

describe("ServiceAccounts applied by another field manager", () => {
  const helmApplied = (names: string[]) => sa("team-a", "app", names, { imagePullSecretsAppliers: ["helm"] });

  it("are reported with what they lack, never edited, and do not make the Secret be re-applied every run", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    const p = plan(
      input(configOf({ "service-account": "*", "acr-registry-info": "- instanceId: cri-one\n  regionId: cn-hangzhou" }), state, [helmApplied(["corp-pull"])]),
    );
    expect(p.namespaces[0]).toMatchObject({ apply: [], serviceAccounts: [], applied: [{ name: "app", managers: ["helm"], missing: [one], stale: [] }] });
  });

  it("plan nothing once the manifest lists the refresher's stable Secret name", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    const p = plan(
      input(configOf({ "service-account": "*", "acr-registry-info": "- instanceId: cri-one\n  regionId: cn-hangzhou" }), state, [
        helmApplied(["corp-pull", one]),
      ]),
    );
    expect(p.namespaces).toEqual([]);
  });

  it("keep a Secret they still list instead of deleting it under them", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1"), applied(two, "team-a", "uid-2")]);
    const p = plan(
      input(oneOnly, state, [
        sa("team-a", "default", [one, two], {
          annotations: { [annotations.managedPullSecrets]: `${one},${two}` },
          imagePullSecretsAppliers: ["argocd-controller"],
        }),
      ]),
    );
    expect(p.namespaces[0]).toMatchObject({ delete: [], applied: [{ name: "default", stale: [two] }] });
  });

  it("are recognised from managedFields: an Apply entry owning imagePullSecrets, not an Update and not the refresher's own", () => {
    const managed = (manager: string, operation: string, fields: Record<string, unknown>) => ({ manager, operation, fieldsType: "FieldsV1", fieldsV1: fields });
    const account: V1ServiceAccount = {
      metadata: {
        name: "app",
        namespace: "team-a",
        managedFields: [
          managed("helm", "Apply", { "f:imagePullSecrets": {}, "f:metadata": {} }),
          managed("argocd-controller", "Apply", { "f:metadata": { "f:labels": {} } }),
          managed("kubectl-edit", "Update", { "f:imagePullSecrets": {} }),
          managed("acr-credential-broker", "Apply", { "f:imagePullSecrets": {} }),
        ],
      },
    };
    expect(imagePullSecretsAppliers(account)).toEqual(["helm"]);
    expect(serviceAccountInfo({ metadata: { name: "plain", namespace: "team-a" } }).imagePullSecretsAppliers).toBeUndefined();
  });

  it("can be opted out one by one with the exclude annotation, which removes only the refresher's entries", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    const optedOut = sa("team-a", "default", ["corp-pull", one], { annotations: { [annotations.managedPullSecrets]: one, [annotations.exclude]: "true" } });
    const p = plan(input(oneOnly, state, [optedOut]));
    expect(p.namespaces[0]?.serviceAccounts).toEqual([expect.objectContaining({ name: "default", add: [], remove: [one] })]);
  });
});

describe("cleanup after narrowing", () => {
  it("reads ServiceAccounts cluster-wide when the namespaces to clean up are many, even for a short watch list", () => {
    const many = Array.from({ length: 400 }, (_, index) => ns(`team-${index}`));
    const state = nextState(
      emptyState(),
      many.map((n) => applied(one, n.name, `uid-${n.name}`)),
    );
    const narrowed = configOf({ "watch-namespace": "team-1,team-2" });
    expect(namespacesToRead(narrowed, many, state)).toMatchObject({ clusterWide: true });
    expect(namespacesToRead(narrowed, many, emptyState())).toEqual({ names: ["team-1", "team-2"], clusterWide: false });
  });
});

describe("conflict Events", () => {
  it("have a name derived from what they say, so a lasting conflict is one Event and a new one another", () => {
    const conflict = { namespace: "team-a", secret: one, kind: "replaced" as const, message: "m" };
    expect(conflictEvent(conflict)).toEqual(conflictEvent({ ...conflict }));
    expect(conflictEvent(conflict).name).not.toBe(conflictEvent({ ...conflict, secret: two }).name);
    expect(conflictEvent(conflict)).toMatchObject({ reason: "SecretReplaced", regarding: { kind: "Secret", name: one } });
    expect(conflictEvent({ namespace: "team-a", secret: one, kind: "applied", serviceAccount: "app", managers: ["helm"], message: "m" }).regarding).toEqual({
      kind: "ServiceAccount",
      name: "app",
    });
  });
});

describe("the status", () => {
  it("lists missing namespaces and each conflict with its kind, and counts a namespace once", () => {
    const conflicts = [
      { namespace: "team-a", secret: one, kind: "replaced" as const, message: "m1" },
      { namespace: "team-a", secret: one, kind: "applied" as const, serviceAccount: "app", managers: ["helm"], message: "m2" },
    ];
    const data = statusData({
      finishedAt: new Date("2030-01-01T00:00:00Z"),
      durationMs: 1,
      mode: "once",
      registries: [],
      namespacesServed: 2,
      result: {
        outcomes: [],
        failures: [],
        conflicts,
        counts: { secretsApplied: 0, serviceAccountsPatched: 0, secretsDeleted: 0, namespacesFailed: 1 },
        missingNamespaces: ["team-typo"],
      },
      state: emptyState(),
    });
    expect(parseYaml(data["missing-namespaces"] ?? "")).toEqual(["team-typo"]);
    expect(parseYaml(data.conflicts ?? "")).toEqual(conflicts);
    expect(parseYaml(data.summary ?? "")).toMatchObject({ namespacesFailed: 1, conflicts: 2 });
  });
});

describe("asking the broker", () => {
  const need = (state: RefresherState, accounts: ServiceAccountInfo[]) =>
    brokerNeed({
      config: oneOnly,
      memory: { version: 1, configHash: credentialConfigHash(oneOnly), expiries: { [one]: "2030-01-01T00:00:00Z" } },
      state,
      namespaces: [ns("team-a")],
      serviceAccounts: accounts,
      now: new Date("2029-12-31T20:00:00Z"),
      intervalSeconds: 300,
      resync: false,
    });

  it("once after an upgrade, to learn the uids of Secrets written by a version that kept none", () => {
    expect(need(nextState(emptyState(), [applied(one, "team-a")]), [attached([one])]).reasons).toEqual([{ code: "secret-uid-unknown", subject: "team-a" }]);
    expect(need(nextState(emptyState(), [applied(one, "team-a", "uid-1")]), [attached([one])]).call).toBe(false);
  });

  it("not for a ServiceAccount it leaves alone (applied by another manager, or opted out), which will keep lacking the Secret", () => {
    const state = nextState(emptyState(), [applied(one, "team-a", "uid-1")]);
    expect(need(state, [sa("team-a", "default", ["corp-pull"], { imagePullSecretsAppliers: ["helm"] })]).call).toBe(false);
    expect(need(state, [sa("team-a", "default", [], { annotations: { [annotations.exclude]: "true" } })]).call).toBe(false);
    expect(need(state, [sa("team-a", "default", [])]).reasons).toEqual([{ code: "service-account-lacks-secret", subject: "team-a/default" }]);
  });
});
