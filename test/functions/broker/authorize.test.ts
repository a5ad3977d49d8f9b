import { describe, expect, it } from "vitest";
import { authorize } from "../../../functions/broker/authorize.ts";
import { parseConfig, type Cluster } from "../../../functions/broker/config.ts";
import { AcrCredentialError } from "../../../shared/errors.ts";
import { thrownBy } from "../../support/errors.ts";

const cluster: Cluster = parseConfig(
  {
    audience: "a",
    clusters: [
      {
        name: "prod",
        issuer: "https://oidc.example.test/prod",
        subjects: ["system:serviceaccount:kube-system:helper"],
        registries: [
          { instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 3600 },
          { instanceId: "cri-own", regionId: "cn-hangzhou", domains: ["own-registry.cn-hangzhou.cr.aliyuncs.com"] },
          { regionId: "cn-beijing" },
        ],
      },
    ],
  },
  "test",
).clusters[0]!;
const rrsaCluster: Cluster = { ...cluster, allowRrsa: true };
const subject = "system:serviceaccount:kube-system:helper";

describe("authorize", () => {
  it("gives every configured registry when the request names none", () => {
    const entries = authorize(cluster, {}, subject);
    expect(entries.map((e) => [e.instanceId, e.regionId])).toEqual([
      ["cri-abc", "cn-hangzhou"],
      ["cri-own", "cn-hangzhou"],
      [undefined, "cn-beijing"],
    ]);
    expect(entries[0]!.chain).toEqual({ assumeRole: { roleArn: "acs:ram::222:role/acr-pull", durationSeconds: 3600 } });
    expect(entries[1]!.chain).toEqual({});
    expect(entries[2]!.target).toEqual({ edition: "personal", regionId: "cn-beijing" });
  });

  it("accepts a requested entry that matches a configured one, with a shorter duration", () => {
    const [entry] = authorize(
      cluster,
      { registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 1800 }] },
      subject,
    );
    expect(entry!.chain.assumeRole).toEqual({ roleArn: "acs:ram::222:role/acr-pull", durationSeconds: 1800 });
  });

  it("uses the requested domains over the configured ones", () => {
    const [entry] = authorize(cluster, { registries: [{ instanceId: "cri-own", regionId: "cn-hangzhou", domains: ["own.example.test"] }] }, subject);
    expect(entry!.target.domains).toEqual(["own.example.test"]);
  });

  it("refuses an instance the cluster was not given", () => {
    const error = thrownBy(() => authorize(cluster, { registries: [{ instanceId: "cri-other", regionId: "cn-hangzhou" }] }, subject));
    expect(error).toMatchObject({ code: "Forbidden", reason: "registry-not-configured" });
  });

  it("refuses a configured instance in another region", () => {
    expect(thrownBy(() => authorize(cluster, { registries: [{ instanceId: "cri-own", regionId: "cn-shanghai" }] }, subject))).toMatchObject({
      code: "Forbidden",
      reason: "registry-not-configured",
    });
  });

  it("refuses a configured instance with another role (no confused deputy)", () => {
    expect(
      thrownBy(() =>
        authorize(cluster, { registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/admin" }] }, subject),
      ),
    ).toMatchObject({ code: "Forbidden", reason: "registry-not-configured" });
  });

  it("refuses a configured instance without its role (that would use the broker's own identity)", () => {
    expect(thrownBy(() => authorize(cluster, { registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou" }] }, subject))).toMatchObject({
      code: "Forbidden",
      reason: "registry-not-configured",
    });
  });

  it("refuses a longer duration than configured", () => {
    const error = thrownBy(() =>
      authorize(
        cluster,
        { registries: [{ instanceId: "cri-abc", regionId: "cn-hangzhou", assumeRoleArn: "acs:ram::222:role/acr-pull", expireDuration: 7200 }] },
        subject,
      ),
    );
    expect(error).toMatchObject({ code: "Forbidden", reason: "duration-too-long" });
  });

  it("refuses the whole request when one entry is not allowed", () => {
    expect(() => authorize(cluster, { registries: [{ regionId: "cn-beijing" }, { instanceId: "cri-other", regionId: "cn-hangzhou" }] }, subject)).toThrow(
      AcrCredentialError,
    );
  });

  it("refuses RRSA entries unless the cluster allows RRSA", () => {
    const error = thrownBy(() =>
      authorize(
        cluster,
        {
          oidcToken: "t",
          registries: [
            {
              instanceId: "cri-x",
              regionId: "cn-hangzhou",
              rrsaRoleArn: "acs:ram::111:role/own",
              rrsaOidcProviderArn: "acs:ram::111:oidc-provider/ack-rrsa-c1",
            },
          ],
        },
        subject,
      ),
    );
    expect(error).toMatchObject({ code: "Forbidden", reason: "rrsa-not-allowed" });
  });

  it("plans an RRSA entry as OIDC role, then the cross-account role, bound to the caller's subject", () => {
    const [entry] = authorize(
      rrsaCluster,
      {
        oidcToken: "t",
        registries: [
          {
            instanceId: "cri-x",
            regionId: "cn-hangzhou",
            rrsaRoleArn: "acs:ram::111:role/own",
            rrsaOidcProviderArn: "acs:ram::111:oidc-provider/ack-rrsa-c1",
            assumeRoleArn: "acs:ram::222:role/pull",
            expireDuration: 1800,
          },
        ],
      },
      subject,
    );
    expect(entry!.chain).toEqual({
      rrsa: { roleArn: "acs:ram::111:role/own", oidcProviderArn: "acs:ram::111:oidc-provider/ack-rrsa-c1", subject },
      assumeRole: { roleArn: "acs:ram::222:role/pull", durationSeconds: 1800 },
    });
  });

  it("asks for oidcToken and the provider ARN of RRSA entries (InvalidRequest)", () => {
    const entry = { instanceId: "cri-x", regionId: "cn-hangzhou", rrsaRoleArn: "acs:ram::111:role/own", rrsaOidcProviderArn: "acs:ram::111:oidc-provider/p" };
    expect(thrownBy(() => authorize(rrsaCluster, { registries: [entry] }, subject)).code).toBe("InvalidRequest");
    expect(thrownBy(() => authorize(rrsaCluster, { oidcToken: "t", registries: [{ ...entry, rrsaOidcProviderArn: undefined }] }, subject)).code).toBe(
      "InvalidRequest",
    );
  });
});
