/**
 * The Alibaba Cloud name shapes every part shares (shared/alibaba/names.ts), against names from Alibaba
 * Cloud's own region list and RAM's naming rules.
 */
import { describe, expect, it } from "vitest";
import {
  anyRamArnPattern,
  instanceIdPattern,
  oidcProviderArnPattern,
  regionIdPattern,
  roleArnPattern,
  sessionSecondsSchema,
} from "../../shared/alibaba/names.ts";
import { configuredRegistrySchema } from "../../functions/broker/config.ts";
import { registryRequestSchema } from "../../shared/broker-api.ts";

describe("Alibaba Cloud names", () => {
  it("accepts the region ids Alibaba Cloud publishes and refuses look-alikes", () => {
    for (const region of [
      "cn-hangzhou",
      "cn-shanghai-finance-1",
      "cn-hongkong",
      "ap-southeast-1",
      "ap-northeast-2",
      "eu-central-1",
      "us-east-1",
      "me-east-1",
      "cn-wulanchabu",
    ])
      expect(region).toMatch(regionIdPattern);
    for (const region of ["Hangzhou", "cn_hangzhou", "cn-", "cn", "1-hangzhou", "cn-hangzhou-", "CN-HANGZHOU"]) expect(region).not.toMatch(regionIdPattern);
  });

  it("reads the account and role of a RAM role ARN, whose names are letters, digits, '.' and '-'", () => {
    expect(roleArnPattern.exec("acs:ram::1234567890123456:role/acr-pull.v2")?.slice(1)).toEqual(["1234567890123456", "acr-pull.v2"]);
    for (const arn of ["acs:ram::1234567890123456:role/acr_pull", "acs:ram::12ab:role/x", "acs:ram::1:user/x", `acs:ram::1:role/${"r".repeat(65)}`])
      expect(arn).not.toMatch(roleArnPattern);
    expect(oidcProviderArnPattern.exec("acs:ram::1234567890123456:oidc-provider/ack-rrsa-c0123456789abcdef")?.slice(1)).toEqual([
      "1234567890123456",
      "ack-rrsa-c0123456789abcdef",
    ]);
    // The add-on's documented placeholders load in the refresher, which leaves the exact check to the broker.
    expect("acs:ram::100XXXXXXXX9630:role/XXXX").toMatch(anyRamArnPattern);
    expect("acs:ram::100XXXXXXXX9630:role/XXXX").not.toMatch(roleArnPattern);
  });

  it("takes Enterprise Edition instance ids and STS session lengths the same way in the broker's configuration and its requests", () => {
    expect("cri-abc123").toMatch(instanceIdPattern);
    expect("cri-").not.toMatch(instanceIdPattern);
    for (const seconds of [899, 900, 43_200, 43_201]) {
      const valid = seconds >= 900 && seconds <= 43_200;
      expect(sessionSecondsSchema.safeParse(seconds).success).toBe(valid);
      expect(configuredRegistrySchema.safeParse({ regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::1:role/r", expireDuration: seconds }).success).toBe(valid);
      expect(registryRequestSchema.safeParse({ regionId: "cn-hangzhou", expireDuration: seconds }).success).toBe(valid);
    }
  });
});
