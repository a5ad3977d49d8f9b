/**
 * The broker's HTTP API (docs/broker.md, "HTTP API"), shared by the broker that serves it and the refresher that
 * calls it. Field names are the wire names; other tools call this API, so change nothing lightly.
 */
import { z } from "zod";
import { sessionSecondsSchema } from "./alibaba/names.ts";

export const registryRequestSchema = z.strictObject({
  instanceId: z.string().min(1).max(64).optional(),
  /** Absent: the cluster's own region, from the broker's configuration of the cluster. */
  regionId: z.string().min(1).max(64).optional(),
  domains: z.array(z.string().min(1).max(253)).max(32).optional(),
  assumeRoleArn: z.string().min(1).max(256).optional(),
  expireDuration: sessionSecondsSchema.optional(),
  rrsaRoleArn: z.string().min(1).max(256).optional(),
  rrsaOidcProviderArn: z.string().min(1).max(256).optional(),
});
export type RegistryRequest = z.infer<typeof registryRequestSchema>;

/**
 * The most `minValiditySeconds` may ask: half of the usual one-hour credential, so that a credential
 * refreshed for it serves it for half its life rather than being refreshed again and again.
 */
export const maxMinValiditySeconds = 1800;

export const credentialsRequestSchema = z.strictObject({
  registries: z.array(registryRequestSchema).max(64).optional(),
  oidcToken: z.string().min(1).max(20_000).optional(),
  force: z.boolean().optional(),
  /**
   * "Give me credentials valid for at least this long": the broker answers from its cache when the
   * cached credential has that much left, else refreshes it once for every cluster asking (a
   * refresher's scheduled renewal; `force` refreshes for this cluster alone).
   */
  minValiditySeconds: z
    .number({ error: "must be a whole number of seconds" })
    .int({ error: "must be a whole number of seconds" })
    .min(0, { error: "must not be negative" })
    .max(maxMinValiditySeconds, {
      error: `is at most ${maxMinValiditySeconds} seconds (credentials live about an hour); ask for less, or send force to renew now`,
    })
    .optional(),
});
export type CredentialsRequest = z.infer<typeof credentialsRequestSchema>;

export const credentialSchema = z.object({
  instanceId: z.string().optional(),
  regionId: z.string(),
  edition: z.enum(["enterprise", "personal"]),
  domains: z.array(z.string()),
  username: z.string(),
  password: z.string(),
  /** RFC 3339, the earliest of the registry password's and the STS session's expiry. */
  expiresAt: z.string(),
  /** Present and true when the upstream failed and a cached, still-valid credential was served. */
  stale: z.boolean().optional(),
});
export type Credential = z.infer<typeof credentialSchema>;

export const entryErrorSchema = z.object({
  instanceId: z.string().optional(),
  regionId: z.string(),
  code: z.string(),
  message: z.string(),
});
export type EntryError = z.infer<typeof entryErrorSchema>;

export const credentialsResponseSchema = z.object({
  cluster: z.string(),
  subject: z.string(),
  credentials: z.array(credentialSchema),
  errors: z.array(entryErrorSchema),
});
export type CredentialsResponse = z.infer<typeof credentialsResponseSchema>;

export const errorResponseSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});
export type ErrorResponse = z.infer<typeof errorResponseSchema>;

/** Summary returned by the non-HTTP `{"action":"renew"}` event: never a password. */
export const renewSummarySchema = z.object({
  cluster: z.string(),
  renewed: z.array(z.object({ instanceId: z.string().optional(), regionId: z.string(), expiresAt: z.string() })),
  errors: z.array(entryErrorSchema),
});
export type RenewSummary = z.infer<typeof renewSummarySchema>;

/** The whole answer to `{"action":"renew","cluster":"NAME"}` (or, without `cluster`, for every cluster). */
export const renewResponseSchema = z.object({ clusters: z.array(renewSummarySchema) });
export type RenewResponse = z.infer<typeof renewResponseSchema>;
