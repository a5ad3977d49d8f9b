import { describe, expect, it } from "vitest";
import { emptyState, holds, isCurrent, nextState, parseState, shortUid } from "../../job/state.ts";

const applied = (namespace: string, fingerprint: string, uid = `${namespace}-0000-uid`) => ({
  kind: "applied" as const,
  secret: "acr-credential-a",
  namespace,
  uid,
  fingerprint,
  expiresAt: "2030-01-01T00:00:00Z",
});

describe("refresher state", () => {
  it("remembers where a fingerprint was applied, keyed by namespace and uid", () => {
    const state = nextState(emptyState(), [applied("team-a", "f1"), applied("team-b", "f1")]);
    expect(isCurrent(state, "acr-credential-a", "f1", "team-a", "team-a-0000-uid")).toBe(true);
    expect(isCurrent(state, "acr-credential-a", "f1", "team-a", "another-uid")).toBe(false);
    expect(isCurrent(state, "acr-credential-a", "f2", "team-a", "team-a-0000-uid")).toBe(false);
  });

  it("marks namespaces not yet updated to new content as outdated, still held", () => {
    const state = nextState(nextState(emptyState(), [applied("team-a", "f1"), applied("team-b", "f1")]), [applied("team-a", "f2")]);
    expect(isCurrent(state, "acr-credential-a", "f2", "team-a", "team-a-0000-uid")).toBe(true);
    expect(isCurrent(state, "acr-credential-a", "f2", "team-b", "team-b-0000-uid")).toBe(false);
    expect(holds(state, "acr-credential-a", "team-b", "team-b-0000-uid")).toBe(true);
  });

  it("keeps a failed write as held (it may have landed) and forgets foreign, deleted and gone ones", () => {
    let state = nextState(emptyState(), [
      applied("a", "f1"),
      applied("b", "f1"),
      applied("c", "f1"),
      { kind: "failed", secret: "acr-credential-a", namespace: "d", uid: "d-0000-uid" },
    ]);
    expect(holds(state, "acr-credential-a", "d", "d-0000-uid")).toBe(true);
    state = nextState(state, [
      { kind: "foreign", secret: "acr-credential-a", namespace: "a" },
      { kind: "deleted", secret: "acr-credential-a", namespace: "b" },
      { kind: "gone", secret: "acr-credential-a", namespace: "c" },
    ]);
    expect(["a", "b", "c"].map((n) => holds(state, "acr-credential-a", n, `${n}-0000-uid`))).toEqual([false, false, false]);
    state = nextState(state, [{ kind: "deleted", secret: "acr-credential-a", namespace: "d" }]);
    expect(state.secrets).toEqual({});
  });

  it("round-trips through JSON and treats unreadable text as empty", () => {
    const state = nextState(emptyState(), [applied("team-a", "f1")]);
    expect(parseState(JSON.stringify(state))).toEqual(state);
    expect(parseState("{not json")).toEqual(emptyState());
    expect(parseState(JSON.stringify({ version: 9 }))).toEqual(emptyState());
    expect(parseState(undefined)).toEqual(emptyState());
  });

  it("keeps 8 characters of a uid, enough to tell re-created namespaces apart", () => {
    expect(shortUid("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")).toBe("0f1e2d3c");
  });
});
