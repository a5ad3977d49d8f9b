import { describe, expect, it } from "vitest";
import { missingPullSecrets, namesInEvent, type PullSecretEvent } from "../../job/pull-secret-events.ts";

// The message exactly as k8s.io/kubernetes pkg/kubelet/kubelet_pods.go formats it (and its own test expects).
const kubelet = (names: string[]) => `Unable to retrieve some image pull secrets (${names.join(", ")}); attempting to pull the image may not succeed.`;
const ours = "acr-credential-0123456789abcdef0123456789abcdef";
const event = (namespace: string, names: string[], lastSeen: string | undefined): PullSecretEvent => ({
  namespace,
  message: kubelet(names),
  lastSeen: lastSeen === undefined ? undefined : new Date(lastSeen),
});

describe("the kubelet's Events about missing pull Secrets", () => {
  it("reads every name the kubelet lists", () => {
    expect(namesInEvent(kubelet([ours, "team-registry"]))).toEqual([ours, "team-registry"]);
    expect(namesInEvent("Back-off pulling image")).toEqual([]);
  });

  it("keeps only the refresher's configured Secrets, by namespace", () => {
    const missing = missingPullSecrets(
      [event("team-a", ["team-registry", ours], "2030-01-01T00:00:05Z"), event("team-b", ["team-registry"], "2030-01-01T00:00:05Z")],
      [ours],
    );
    expect(missing).toEqual(new Map([["team-a", new Set([ours])]]));
  });

  it("ignores Events of the second of the last apply or older (whole-second times), and those without a time", () => {
    const after = new Date("2030-01-01T00:00:05.400Z");
    const events = [
      event("old", [ours], "2030-01-01T00:00:04Z"),
      event("same-second", [ours], "2030-01-01T00:00:05Z"),
      event("later", [ours], "2030-01-01T00:00:06Z"),
      event("no-time", [ours], undefined),
    ];
    expect([...missingPullSecrets(events, [ours], after).keys()]).toEqual(["later"]);
  });
});
