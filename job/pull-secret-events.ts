/**
 * The kubelet's word that a pull Secret is missing. When a pod names a pull Secret that does not
 * exist (deleted by hand), the kubelet records a Warning Event on the pod, reason
 * `FailedToRetrieveImagePullSecret`, message `Unable to retrieve some image pull secrets (a, b);
 * attempting to pull the image may not succeed.` (k8s.io/kubernetes pkg/kubelet/kubelet_pods.go),
 * again on every retry of the pull. The refresher never reads Secrets (decision 002); these Events
 * tell it which of its own are gone and where, so it can write them again. Pure: the caller lists
 * or watches the Events (field selector below) and acts on the result.
 */

export const missingPullSecretReason = "FailedToRetrieveImagePullSecret";
/** Field selector of the Events to list or watch: only these, whatever else happens in the cluster. */
export const missingPullSecretSelector = `reason=${missingPullSecretReason}`;

export interface PullSecretEvent {
  namespace: string;
  message: string;
  /** When the kubelet last said so (series, lastTimestamp, eventTime, or the Event's creation). */
  lastSeen: Date | undefined;
}

const listed = /Unable to retrieve some image pull secrets \(([^)]*)\)/;

/** The Secret names an Event says are missing. */
export function namesInEvent(message: string): string[] {
  const match = listed.exec(message);
  if (match === null) return [];
  return (match[1] as string)
    .split(",")
    .map((name) => name.trim())
    .filter((name) => name !== "");
}

/**
 * The refresher's Secrets (of `configured`) that the kubelet could not find, by namespace, from
 * Events seen after `after` (older ones were answered by an apply since, or are stale). Event times
 * have whole seconds: one of the same second as `after` is taken as answered, which loses nothing,
 * as the kubelet says it again on its next attempt to pull while the Secret is still missing.
 */
export function missingPullSecrets(events: readonly PullSecretEvent[], configured: readonly string[], after?: Date): Map<string, Set<string>> {
  const ours = new Set(configured);
  const missing = new Map<string, Set<string>>();
  for (const event of events) {
    if (after !== undefined && (event.lastSeen === undefined || event.lastSeen.getTime() < (Math.floor(after.getTime() / 1000) + 1) * 1000)) continue;
    for (const name of namesInEvent(event.message)) {
      if (!ours.has(name)) continue;
      const names = missing.get(event.namespace) ?? new Set<string>();
      names.add(name);
      missing.set(event.namespace, names);
    }
  }
  return missing;
}
