import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { cacheKeyRingFromEnv, open, parseCacheKey, seal } from "../../../../functions/broker/cache/sealed.ts";
import { thrownBy } from "../../../support/errors.ts";

function expectCode(run: () => unknown, code: string) {
  const error = thrownBy(run);
  expect(error.code).toBe(code);
  return error;
}

const secret = () => randomBytes(32).toString("base64");
const ring = (current: string, previous?: string) =>
  cacheKeyRingFromEnv({ BROKER_CACHE_KEY: current, ...(previous ? { BROKER_CACHE_PREVIOUS_KEY: previous } : {}) });
const name = "acr-credential-broker:credential:broker#personal@cn-beijing";

describe("sealing a shared-cache value", () => {
  const k1 = `k1:${secret()}`;
  const k2 = `k2:${secret()}`;

  it("opens under the name it was sealed for, and names its key id", () => {
    const sealed = seal(ring(k1), name, '{"password":"p"}');
    expect(sealed).toMatch(/^v1\.k1\.[A-Za-z0-9_-]+$/);
    expect(open(ring(k1), name, sealed)).toEqual({ ok: true, plaintext: '{"password":"p"}', keyId: "k1" });
  });

  it("never shows the plaintext, and seals the same plaintext differently each time", () => {
    const a = seal(ring(k1), name, "hunter2-hunter2");
    const b = seal(ring(k1), name, "hunter2-hunter2");
    expect(a).not.toBe(b);
    expect(Buffer.from(a.split(".")[2]!, "base64url").toString("latin1")).not.toContain("hunter2");
  });

  it("refuses a value read under another name (moved or copied)", () => {
    const sealed = seal(ring(k1), name, "x");
    expect(open(ring(k1), `${name}x`, sealed)).toEqual({ ok: false, reason: "authentication" });
  });

  it("refuses a value with any byte changed", () => {
    const sealed = seal(ring(k1), name, "some plaintext");
    const body = Buffer.from(sealed.split(".")[2]!, "base64url");
    for (const index of [0, 12, body.length - 1]) {
      const changed = Buffer.from(body);
      changed[index]! ^= 1;
      expect(open(ring(k1), name, `v1.k1.${changed.toString("base64url")}`)).toEqual({ ok: false, reason: "authentication" });
    }
  });

  it("opens values of the previous key after rotation, and refuses a key id it does not know", () => {
    const old = seal(ring(k1), name, "old");
    expect(open(ring(k2, k1), name, old)).toMatchObject({ ok: true, plaintext: "old", keyId: "k1" });
    expect(open(ring(k2), name, old)).toEqual({ ok: false, reason: "unknownKey" });
    expect(seal(ring(k2, k1), name, "new")).toMatch(/^v1\.k2\./);
  });

  it("refuses a value under a known key id but sealed with another key", () => {
    const forged = seal(ring(`k1:${secret()}`), name, "forged");
    expect(open(ring(k1), name, forged)).toEqual({ ok: false, reason: "authentication" });
  });

  it("refuses malformed values", () => {
    for (const text of ["", "v1", "v1.k1", "v2.k1.AAAA", "v1.k1.AAAA", "v1.k1.AAAA.BBBB", "plain password"]) expect(open(ring(k1), name, text).ok).toBe(false);
  });
});

describe("the key from the environment", () => {
  it("is required when the shared cache is configured", () => {
    const error = expectCode(() => cacheKeyRingFromEnv({}), "ConfigInvalid");
    expect(error.message).toMatch(/^sharedCache is configured but BROKER_CACHE_KEY is not set; set it to <keyId>:<base64 of 32 random bytes>/);
  });

  it.each([
    ["no key id", secret(), /key id before ':'/],
    ["a bad key id", `bad id:${secret()}`, /key id before ':'/],
    ["16 bytes", `k1:${randomBytes(16).toString("base64")}`, /not 32 bytes of base64/],
    ["not base64", `k1:${"!".repeat(44)}`, /not 32 bytes of base64/],
    ["no key", "k1:", /not 32 bytes of base64/],
  ])("refuses %s with one line that does not repeat the value", (_label, value, message) => {
    const error = expectCode(() => parseCacheKey(value, "BROKER_CACHE_KEY"), "ConfigInvalid");
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain("\n");
    const encoded = value.slice(value.indexOf(":") + 1);
    if (encoded.length > 8) expect(error.message).not.toContain(encoded);
  });

  it("refuses a previous key with the current key's id", () => {
    const error = expectCode(() => ring(`k1:${secret()}`, `k1:${secret()}`), "ConfigInvalid");
    expect(error.message).toMatch(/BROKER_CACHE_PREVIOUS_KEY has the same key id 'k1'/);
  });
});
