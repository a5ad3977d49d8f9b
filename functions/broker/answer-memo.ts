/**
 * Answers remembered per verified token and request body. A refresher asks the same question every
 * few minutes and, on a warm broker, gets the same answer back; remembering it skips the body's
 * schema, the authorization and the cache lookups of every registry. An answer is kept only while
 * all of these hold, so it is never one the full path would not give:
 * - the token's verification is still remembered (the memo hangs off that `VerifiedToken` object,
 *   which the verifier replaces at least once a minute and whenever the token expires);
 * - every credential in it is fresh (before `expiresAt − refreshBeforeExpiry`);
 * - no credential has been forced or renewed in this instance since the request that gave it
 *   started (`forget()` is called before and after such a refresh).
 * Only complete answers are kept: no stale credential, no failed entry, no `force`, no RRSA token.
 */
import type { CredentialsResponse } from "../../shared/broker-api.ts";
import type { RequestAnnotations } from "./broker.ts";
import type { VerifiedToken } from "./token.ts";

interface Remembered {
  response: CredentialsResponse;
  annotations: RequestAnnotations;
  /** Epoch ms until which every credential in the answer is fresh. */
  freshUntil: number;
  generation: number;
}

/** Different bodies remembered per token at most; a refresher sends one. */
const bodiesPerToken = 4;

export class AnswerMemo {
  readonly #byToken = new WeakMap<VerifiedToken, Map<string, Remembered>>();
  #generation = 0;

  /** The remembered answer to this body from this token, if it still holds at `now`. */
  recall(token: VerifiedToken, body: Buffer, now: number): Remembered | undefined {
    const hit = this.#byToken.get(token)?.get(body.toString("latin1"));
    return hit && hit.generation === this.#generation && now < hit.freshUntil ? hit : undefined;
  }

  /** Where forced refreshes stand; an answer computed from here on is remembered under it. */
  get generation(): number {
    return this.#generation;
  }

  /** Remembers a complete answer, begun at `generation`, until its first credential is due for refresh. */
  remember(
    token: VerifiedToken,
    body: Buffer,
    response: CredentialsResponse,
    annotations: RequestAnnotations,
    options: { generation: number; refreshBeforeMs: number; now: number },
  ): void {
    const { generation, refreshBeforeMs, now } = options;
    if (generation !== this.#generation) return;
    if (response.errors.length > 0 || response.credentials.some((c) => c.stale)) return;
    const freshUntil = Math.min(...response.credentials.map((c) => Date.parse(c.expiresAt))) - refreshBeforeMs;
    if (!(freshUntil > now)) return;
    let bodies = this.#byToken.get(token);
    if (!bodies) this.#byToken.set(token, (bodies = new Map()));
    const key = body.toString("latin1");
    if (bodies.size >= bodiesPerToken && !bodies.has(key)) return;
    bodies.set(key, { response, annotations: { ...annotations }, freshUntil, generation });
  }

  /** A credential was forced or renewed: nothing remembered so far may be answered again. */
  forget(): void {
    this.#generation++;
  }
}
