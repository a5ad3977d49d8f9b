/**
 * The Alibaba Cloud the broker tests run against. Platform account P runs the broker (a RAM user
 * outside FC, the `fc-broker` execution role inside) and owns an Enterprise instance and a
 * Personal registry; tenant account T owns an instance its role lends to P's identities. Fake keys only.
 */
import type { WorldInput } from "../../../../emulator/index.ts";
import type { TestCluster } from "./clusters.ts";

export const platform = "1000000000000001";
export const tenant = "2000000000000002";

export const brokerUser = { accessKeyId: "TESTAKBROKERUSER01", accessKeySecret: "test-secret-broker-user-not-real" };
/** An operator who may invoke the broker function (acr-credential renew). */
export const operatorUser = { accessKeyId: "TESTAKOPERATOR0001", accessKeySecret: "test-secret-operator-not-real" };
/** A user the platform's roles do not trust. */
export const strangerUser = { accessKeyId: "TESTAKSTRANGER0001", accessKeySecret: "test-secret-stranger-not-real" };

export const roles = {
  acrPull: `acs:ram::${platform}:role/acr-pull`,
  fcBroker: `acs:ram::${platform}:role/fc-broker`,
  rrsaOwn: `acs:ram::${platform}:role/rrsa-own`,
  tenantPull: `acs:ram::${tenant}:role/acr-pull-cross`,
};

export const rrsaProvider = `acs:ram::${platform}:oidc-provider/ack-rrsa-c1`;

export const instances = {
  platform: {
    instanceId: "cri-plat",
    regionId: "cn-hangzhou",
    domains: ["plat-registry.cn-hangzhou.cr.aliyuncs.com", "plat-registry-vpc.cn-hangzhou.cr.aliyuncs.com"],
  },
  tenant: { instanceId: "cri-tenant", regionId: "cn-shanghai" },
};

const trustRam = (...principals: string[]) => ({ Statement: [{ Effect: "Allow" as const, Action: "sts:AssumeRole", Principal: { RAM: principals } }] });

/** `rrsaCluster`'s tokens (audience sts.aliyuncs.com, kube-system ServiceAccounts) may assume `rrsa-own`. */
export function brokerWorld(rrsaCluster: TestCluster): WorldInput {
  return {
    accounts: [
      {
        id: platform,
        name: "platform",
        policies: {
          AssumeRoles: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Resource: "*" }] },
          PersonalTokens: {
            Statement: [
              { Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: `acs:cr:*:${platform}:*` },
              { Effect: "Allow", Action: "cr:PullRepository", Resource: `acs:cr:*:${platform}:repository/*/*` },
            ],
          },
          PullPlatform: {
            Statement: [
              // CR checks GetAuthorizationToken on all resources (acs:cr:<region>:<account>:*), never per instance.
              { Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: "*" },
              { Effect: "Allow", Action: "cr:ListInstanceEndpoint", Resource: `acs:cr:cn-hangzhou:${platform}:instance/cri-plat` },
              { Effect: "Allow", Action: "cr:PullRepository", Resource: `acs:cr:cn-hangzhou:${platform}:repository/cri-plat/*` },
            ],
          },
        },
        users: [
          { name: "broker", accessKeys: [{ id: brokerUser.accessKeyId, secret: brokerUser.accessKeySecret }], policies: ["AssumeRoles", "PersonalTokens"] },
          { name: "stranger", accessKeys: [{ id: strangerUser.accessKeyId, secret: strangerUser.accessKeySecret }], policies: ["AssumeRoles"] },
          {
            name: "operator",
            accessKeys: [{ id: operatorUser.accessKeyId, secret: operatorUser.accessKeySecret }],
            policies: [{ Statement: [{ Effect: "Allow", Action: "fc:InvokeFunction", Resource: `acs:fc:*:${platform}:functions/acr-credential-broker` }] }],
          },
        ],
        roles: [
          { name: "acr-pull", trustPolicy: trustRam(`acs:ram::${platform}:user/broker`, roles.fcBroker), policies: ["PullPlatform"] },
          {
            name: "fc-broker",
            trustPolicy: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { Service: ["fc.aliyuncs.com"] } }] },
            policies: ["AssumeRoles", "PersonalTokens"],
          },
          {
            name: "rrsa-own",
            trustPolicy: {
              Statement: [
                {
                  Effect: "Allow",
                  Action: "sts:AssumeRole",
                  Principal: { Federated: [rrsaProvider] },
                  Condition: {
                    StringEquals: { "oidc:aud": "sts.aliyuncs.com", "oidc:iss": rrsaCluster.issuer },
                    StringLike: { "oidc:sub": "system:serviceaccount:kube-system:*" },
                  },
                },
              ],
            },
            policies: ["AssumeRoles"],
          },
        ],
        oidcProviders: [{ name: "ack-rrsa-c1", issuer: rrsaCluster.issuer, clientIds: ["sts.aliyuncs.com"], jwks: rrsaCluster.jwks as never }],
        instances: [
          {
            id: "cri-plat",
            name: "plat",
            region: "cn-hangzhou",
            endpoints: [
              { type: "internet", enable: true, domains: [instances.platform.domains[0]!] },
              { type: "vpc", enable: true, domains: [instances.platform.domains[1]!] },
            ],
            repositories: ["apps/web"],
          },
        ],
        personal: [{ region: "cn-beijing", repositories: ["team/tool"] }],
      },
      {
        id: tenant,
        name: "tenant",
        roles: [
          {
            name: "acr-pull-cross",
            trustPolicy: trustRam(`acs:ram::${platform}:user/broker`, roles.rrsaOwn, roles.fcBroker),
            policies: [
              {
                Statement: [
                  { Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: `acs:cr:*:${tenant}:*` },
                  { Effect: "Allow", Action: "cr:ListInstanceEndpoint", Resource: `acs:cr:*:${tenant}:instance/cri-tenant` },
                  { Effect: "Allow", Action: "cr:PullRepository", Resource: `acs:cr:*:${tenant}:repository/cri-tenant/*` },
                ],
              },
            ],
          },
        ],
        instances: [{ id: "cri-tenant", name: "tenant", region: "cn-shanghai", repositories: ["tenant/app"] }],
      },
    ],
  };
}
