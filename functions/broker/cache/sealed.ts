/**
 * Values at rest in the shared cache: AES-256-GCM under a key the function receives from its
 * environment, with the full Redis key name as additional authenticated data, so a value copied
 * under another name fails to open. Each value names the key it was sealed with, so the key can be
 * rotated: new values use the current key, values under the previous one stay readable until they
 * expire. A value that does not open is a miss, never an error a request sees.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { AcrCredentialError } from "../../../shared/errors.ts";

export interface CacheKey {
  id: string;
  /** 32 bytes. */
  secret: Buffer;
}

export interface CacheKeyRing {
  current: CacheKey;
  previous?: CacheKey;
}

export const cacheKeyEnv = "BROKER_CACHE_KEY";
export const previousCacheKeyEnv = "BROKER_CACHE_PREVIOUS_KEY";

const keyIdPattern = /^[A-Za-z0-9._-]{1,64}$/;
const base64Pattern = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses `<keyId>:<base64 of 32 bytes>`; the message never repeats the value. */
export function parseCacheKey(text: string, variable: string): CacheKey {
  const colon = text.indexOf(":");
  const id = colon > 0 ? text.slice(0, colon) : "";
  const encoded = colon > 0 ? text.slice(colon + 1).trim() : "";
  const fix = `expected <keyId>:<base64 of 32 random bytes>, e.g. ${variable}="k1:$(openssl rand -base64 32)"`;
  if (!keyIdPattern.test(id))
    throw new AcrCredentialError("ConfigInvalid", `${variable}: the key id before ':' must be 1-64 letters, digits, '.', '_' or '-'; ${fix}`);
  const secret = base64Pattern.test(encoded) ? Buffer.from(encoded, "base64") : Buffer.alloc(0);
  if (secret.length !== 32) throw new AcrCredentialError("ConfigInvalid", `${variable}: the key after '${id}:' is not 32 bytes of base64 (AES-256); ${fix}`);
  return { id, secret };
}

/** The key ring from the environment; required whenever `sharedCache` is configured. */
export function cacheKeyRingFromEnv(env: Readonly<Record<string, string | undefined>>): CacheKeyRing {
  const current = env[cacheKeyEnv];
  if (!current)
    throw new AcrCredentialError(
      "ConfigInvalid",
      `sharedCache is configured but ${cacheKeyEnv} is not set; set it to <keyId>:<base64 of 32 random bytes> (the same on every instance) and restart`,
    );
  const ring: CacheKeyRing = { current: parseCacheKey(current, cacheKeyEnv) };
  const previous = env[previousCacheKeyEnv];
  if (previous) {
    ring.previous = parseCacheKey(previous, previousCacheKeyEnv);
    if (ring.previous.id === ring.current.id)
      throw new AcrCredentialError(
        "ConfigInvalid",
        `${previousCacheKeyEnv} has the same key id '${ring.current.id}' as ${cacheKeyEnv}; give each key its own id`,
      );
  }
  return ring;
}

const version = "v1";
const ivBytes = 12;
const tagBytes = 16;

/** `v1.<keyId>.<base64url(iv ‖ ciphertext ‖ tag)>`, bound to `name`. */
export function seal(ring: CacheKeyRing, name: string, plaintext: string): string {
  const iv = randomBytes(ivBytes);
  const cipher = createCipheriv("aes-256-gcm", ring.current.secret, iv);
  cipher.setAAD(Buffer.from(name, "utf8"));
  const body = Buffer.concat([iv, cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
  return `${version}.${ring.current.id}.${body.toString("base64url")}`;
}

export type Opened = { ok: true; plaintext: string; keyId: string } | { ok: false; reason: "malformed" | "unknownKey" | "authentication" };

/** Opens a value read under `name`; anything but an intact value sealed for this name under a known key is refused. */
export function open(ring: CacheKeyRing, name: string, sealed: string): Opened {
  const [v, keyId, encoded, extra] = sealed.split(".");
  if (v !== version || !keyId || !encoded || extra !== undefined) return { ok: false, reason: "malformed" };
  const key = [ring.current, ring.previous].find((k) => k?.id === keyId);
  if (!key) return { ok: false, reason: "unknownKey" };
  const body = Buffer.from(encoded, "base64url");
  if (body.length < ivBytes + tagBytes) return { ok: false, reason: "malformed" };
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.secret, body.subarray(0, ivBytes));
    decipher.setAAD(Buffer.from(name, "utf8"));
    decipher.setAuthTag(body.subarray(body.length - tagBytes));
    const plaintext = Buffer.concat([decipher.update(body.subarray(ivBytes, body.length - tagBytes)), decipher.final()]).toString("utf8");
    return { ok: true, plaintext, keyId };
  } catch {
    return { ok: false, reason: "authentication" };
  }
}
