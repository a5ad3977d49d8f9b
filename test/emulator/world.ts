/**
 * The world most emulator tests run against. Account A holds the broker user, a role it may
 * assume and an Enterprise instance; account B holds a cross-account role trusted by A's role.
 * Fake keys only.
 */
import type { WorldInput } from "../../emulator/index.ts";

export const accountA = "1000000000000001";
export const accountB = "2000000000000002";

export const broker = { accessKeyId: "TESTAKBROKER0001", accessKeySecret: "test-secret-broker-0001" };
export const outsider = { accessKeyId: "TESTAKOUTSIDER01", accessKeySecret: "test-secret-outsider-01" };
export const viewer = { accessKeyId: "TESTAKVIEWER0001", accessKeySecret: "test-secret-viewer-0001" };
export const operator = { accessKeyId: "TESTAKOPERATOR01", accessKeySecret: "test-secret-operator-01" };

export const roles = {
  acrPull: `acs:ram::${accountA}:role/acr-pull`,
  acrPush: `acs:ram::${accountA}:role/acr-push`,
  hop: `acs:ram::${accountA}:role/hop`,
  crossPull: `acs:ram::${accountB}:role/cross-pull`,
  longSession: `acs:ram::${accountA}:role/long-session`,
  rrsa: `acs:ram::${accountA}:role/rrsa-pull`,
  fcExecution: `acs:ram::${accountA}:role/fc-broker`,
};

export const instances = { demo: "cri-demo", other: "cri-other", foreign: "cri-foreign" };

const trust = (...principals: string[]) => ({ Statement: [{ Effect: "Allow" as const, Action: "sts:AssumeRole", Principal: { RAM: principals } }] });

export function testWorld(extra: { oidcProviders?: NonNullable<WorldInput["accounts"][number]["oidcProviders"]>; rrsaTrust?: object } = {}): WorldInput {
  return {
    accounts: [
      {
        id: accountA,
        name: "platform",
        policies: {
          AssumeAnyRole: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Resource: "*" }] },
          PullDemo: {
            Statement: [
              // CR checks GetAuthorizationToken on all of a region's resources, never on one instance.
              { Effect: "Allow", Action: "cr:GetAuthorizationToken", Resource: `acs:cr:cn-hangzhou:${accountA}:*` },
              { Effect: "Allow", Action: ["cr:ListInstanceEndpoint", "cr:GetInstance"], Resource: `acs:cr:cn-hangzhou:${accountA}:instance/${instances.demo}` },
              { Effect: "Allow", Action: "cr:PullRepository", Resource: `acs:cr:cn-hangzhou:${accountA}:repository/${instances.demo}/demo/*` },
              { Effect: "Allow", Action: "cr:ListInstance", Resource: `acs:cr:*:${accountA}:*` },
            ],
          },
        },
        users: [
          { name: "broker", accessKeys: [{ id: broker.accessKeyId, secret: broker.accessKeySecret }], policies: ["AssumeAnyRole"] },
          { name: "outsider", accessKeys: [{ id: outsider.accessKeyId, secret: outsider.accessKeySecret }], policies: ["AssumeAnyRole"] },
          { name: "viewer", accessKeys: [{ id: viewer.accessKeyId, secret: viewer.accessKeySecret }], policies: [] },
          {
            name: "operator",
            accessKeys: [{ id: operator.accessKeyId, secret: operator.accessKeySecret }],
            policies: [
              {
                Statement: [
                  {
                    Effect: "Allow",
                    Action: "fc:InvokeFunction",
                    Resource: [`acs:fc:*:${accountA}:services/token-broker/functions/*`, `acs:fc:*:${accountA}:functions/token-broker`],
                  },
                ],
              },
              "AssumeAnyRole",
            ],
          },
        ],
        roles: [
          { name: "acr-pull", trustPolicy: trust(`acs:ram::${accountA}:user/broker`), policies: ["PullDemo"] },
          {
            name: "acr-push",
            trustPolicy: trust(`acs:ram::${accountA}:user/broker`),
            policies: [
              {
                Statement: [
                  { Effect: "Allow", Action: ["cr:GetAuthorizationToken", "cr:ListInstanceEndpoint"], Resource: `acs:cr:*:${accountA}:*` },
                  { Effect: "Allow", Action: ["cr:PullRepository", "cr:PushRepository"], Resource: `acs:cr:*:${accountA}:repository/*` },
                ],
              },
            ],
          },
          { name: "hop", trustPolicy: trust(`acs:ram::${accountA}:user/broker`), policies: ["AssumeAnyRole"] },
          { name: "long-session", maxSessionDuration: 7200, trustPolicy: trust(`acs:ram::${accountA}:root`), policies: ["PullDemo"] },
          { name: "rrsa-pull", trustPolicy: (extra.rrsaTrust ?? trust(`acs:ram::${accountA}:root`)) as never, policies: ["PullDemo", "AssumeAnyRole"] },
          {
            name: "fc-broker",
            trustPolicy: { Statement: [{ Effect: "Allow", Action: "sts:AssumeRole", Principal: { Service: ["fc.aliyuncs.com"] } }] },
            policies: ["AssumeAnyRole"],
          },
        ],
        oidcProviders: extra.oidcProviders ?? [],
        instances: [
          { id: instances.demo, name: "demo", region: "cn-hangzhou", repositories: ["demo/hello", "secret/vault"] },
          {
            id: instances.other,
            name: "other",
            region: "cn-beijing",
            specification: "Enterprise_Standard",
            endpoints: [
              { type: "internet", enable: false, domains: ["other-registry.cn-beijing.cr.aliyuncs.com"] },
              {
                type: "vpc",
                domains: [
                  { domain: "other-registry-vpc.cn-beijing.cr.aliyuncs.com", type: "SYSTEM" },
                  { domain: "registry.example.com", type: "USER" },
                ],
              },
            ],
          },
        ],
        personal: [{ region: "cn-hangzhou", repositories: ["demo/hello"] }],
      },
      {
        id: accountB,
        name: "tenant",
        roles: [
          {
            name: "cross-pull",
            trustPolicy: trust(`acs:ram::${accountA}:role/hop`),
            policies: [{ Statement: [{ Effect: "Allow", Action: ["cr:GetAuthorizationToken", "cr:PullRepository"], Resource: `acs:cr:*:${accountB}:*` }] }],
          },
        ],
        instances: [{ id: instances.foreign, name: "foreign", region: "cn-shanghai", repositories: ["tenant/app"] }],
      },
    ],
  };
}
