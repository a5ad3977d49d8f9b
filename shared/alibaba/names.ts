/**
 * The shapes of Alibaba Cloud names the product reads or writes, in one place: region and Enterprise
 * Edition instance ids, RAM ARNs, STS session lengths. The broker's configuration, the refresher's, the
 * request schema and the emulator all check against these, so a name one part accepts the others do too.
 * Each comes as a pattern (for code that reports problems its own way) and a zod schema with the message
 * users see.
 */
import { z } from "zod";

/** `cn-hangzhou`, `ap-southeast-1`, `cn-shanghai-finance-1`: a lower-case geography, then parts. */
export const regionIdPattern = /^[a-z]{2,}(-[a-z0-9]+)+$/;
/** `cri-` and the instance's suffix (Personal Edition registries have no instance id). */
export const instanceIdPattern = /^cri-[A-Za-z0-9]{1,60}$/;
/**
 * A RAM role ARN: RAM role names are 1-64 letters, digits, '.' or '-'; groups are the account and the
 * role. The account is digits (16 today; older accounts have fewer).
 */
export const roleArnPattern = /^acs:ram::(\d{1,20}):role\/([A-Za-z0-9.-]{1,64})$/;
/** A RAM OIDC identity provider ARN (RRSA's `ack-rrsa-<cluster id>` among them); groups as above. */
export const oidcProviderArnPattern = /^acs:ram::(\d{1,20}):oidc-provider\/([A-Za-z0-9._-]{1,128})$/;
/**
 * Any RAM ARN, by its prefix only. The add-on's documented examples hide account ids and names behind
 * `XXXX`, and people paste them to see what loads; the refresher accepts that shape and leaves the exact
 * check to the broker, which refuses what it cannot use.
 */
export const anyRamArnPattern = /^acs:ram::[^:\s]*:\S+$/;

/** STS `DurationSeconds` (the registry's `expireDuration`): from 900 s up to the role's maximum. */
export const sessionSeconds = { min: 900, max: 43_200 } as const;
/** A RAM role's `MaxSessionDuration`: 3600 s to 12 hours. */
export const maxSessionSeconds = { min: 3_600, max: 43_200 } as const;

export const regionIdSchema = z.string().regex(regionIdPattern, { error: "expected a region id like cn-hangzhou" });
export const instanceIdSchema = z.string().regex(instanceIdPattern, { error: "expected an Enterprise Edition instance id like cri-abc123" });
export const roleArnSchema = z.string().regex(roleArnPattern, { error: "expected a RAM role ARN like acs:ram::123456789012:role/acr-pull" });
export const sessionSecondsSchema = z.number().int().min(sessionSeconds.min).max(sessionSeconds.max);
