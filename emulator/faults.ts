import { z } from "zod";
import { AcrCredentialError } from "../shared/errors.ts";
import { matchesApi } from "./api-pattern.ts";
import { describeIssues } from "../shared/schema-problems.ts";

const rate = z.number().min(0).max(1);

export const faultSettingsSchema = z.strictObject({
  /** Share of requests refused with `Throttling.User` (HTTP 400). */
  throttleRate: rate.default(0),
  /** Share of requests failed with `ServiceUnavailable` (503) or `InternalError` (500). */
  serverErrorRate: rate.default(0),
  /** Delay added to a delayed request. */
  latencyMs: z.number().int().min(0).default(0),
  /** Share of requests delayed by `latencyMs`; default every request when `latencyMs` is set. */
  latencyRate: rate.optional(),
  /** Same seed, same sequence of decisions. */
  seed: z.number().int().default(1),
  /** API patterns the faults apply to (`["cr:"]`, `["sts:AssumeRole"]`); default every STS, CR and ACK API. */
  apis: z.array(z.string().min(1)).optional(),
  /**
   * CR 2018-12-01 answers that are not HTTP errors: a `rate` share of requests is answered HTTP 200
   * with `IsSuccess: false` and this `code` (and `message`, if given). Other APIs are not affected.
   */
  unsuccessful: z
    .strictObject({
      rate: rate.default(1),
      code: z.string().regex(/^[A-Za-z][A-Za-z0-9_.]{0,63}$/, "a code is letters, digits, '_' or '.', like SYSTEM_ERROR"),
      message: z.string().max(300).optional(),
    })
    .optional(),
});

export type FaultSettings = z.input<typeof faultSettingsSchema>;

export type FaultDecision =
  | { kind: "none"; delayMs: number }
  | { kind: "throttle"; delayMs: number }
  | { kind: "serverError"; delayMs: number; status: 500 | 503; code: "InternalError" | "ServiceUnavailable" }
  | { kind: "unsuccessful"; delayMs: number; code: string; message: string | undefined };

/** mulberry32: tiny, fast and good enough to make fault sequences reproducible. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FaultInjector {
  /** Replaces the settings and restarts the sequence from the seed. */
  set(settings: FaultSettings): void;
  clear(): void;
  readonly settings: Readonly<z.output<typeof faultSettingsSchema>> | undefined;
  /** The fault for one request to `api`; consumes the sequence only for APIs the faults apply to. */
  decide(api: string): FaultDecision;
}

const faultableProducts = ["sts:", "cr:", "cs:"];

export function createFaultInjector(initial?: FaultSettings): FaultInjector {
  let settings: z.output<typeof faultSettingsSchema> | undefined;
  let random = seededRandom(1);
  const injector: FaultInjector = {
    get settings() {
      return settings;
    },
    set(next) {
      const parsed = faultSettingsSchema.safeParse(next);
      if (!parsed.success) {
        throw new AcrCredentialError("ConfigInvalid", `fault settings: ${describeIssues(parsed.error)}`);
      }
      settings = parsed.data;
      random = seededRandom(settings.seed);
    },
    clear() {
      settings = undefined;
    },
    decide(api) {
      if (settings === undefined) return { kind: "none", delayMs: 0 };
      if (!faultableProducts.some((product) => api.startsWith(product))) return { kind: "none", delayMs: 0 };
      if (settings.apis !== undefined && !settings.apis.some((pattern) => matchesApi(pattern, api))) return { kind: "none", delayMs: 0 };
      // Always draw four numbers so one setting does not shift the sequence of another.
      const [latency, throttle, serverError, which] = [random(), random(), random(), random()];
      const latencyRate = settings.latencyRate ?? (settings.latencyMs > 0 ? 1 : 0);
      const delayMs = latency < latencyRate ? settings.latencyMs : 0;
      if (throttle < settings.throttleRate) return { kind: "throttle", delayMs };
      // A fifth number only when an unsuccessful answer is asked for, so existing seeds keep their sequences.
      const unsuccessful = settings.unsuccessful === undefined ? 1 : random();
      if (serverError < settings.serverErrorRate) {
        return which < 0.5
          ? { kind: "serverError", delayMs, status: 503, code: "ServiceUnavailable" }
          : { kind: "serverError", delayMs, status: 500, code: "InternalError" };
      }
      if (settings.unsuccessful !== undefined && unsuccessful < settings.unsuccessful.rate) {
        return { kind: "unsuccessful", delayMs, code: settings.unsuccessful.code, message: settings.unsuccessful.message };
      }
      return { kind: "none", delayMs };
    },
  };
  if (initial !== undefined) injector.set(initial);
  return injector;
}
