/**
 * ACK (Container Service for Kubernetes, CS 2015-12-15): only `DescribeClusterDetail`, which is how
 * the broker confirms that an issuer belongs to a real cluster. The request is the one
 * `@alicloud/cs20151215`'s client makes (same `Params`, through `@alicloud/openapi-core`) and the
 * answer is read into that package's own response model; its full client (every ACK model) would
 * triple the size of the broker's bundle.
 */
import { DescribeClusterDetailResponse } from "@alicloud/cs20151215/dist/models/DescribeClusterDetailResponse.js";
import * as dara from "@darabonba/typescript";
import type { CallOptions, Identity } from "./identity.ts";
import { $OpenApiUtil, OpenApi, runtimeOptions, sdkConfig } from "./sdk.ts";
import { toUpstreamError } from "./upstream-error.ts";

/** As in `Client.describeClusterDetailWithOptions` of `@alicloud/cs20151215` 7.2.0. */
const describeClusterDetailParams = (clusterId: string) =>
  new $OpenApiUtil.Params({
    action: "DescribeClusterDetail",
    version: "2015-12-15",
    protocol: "HTTPS",
    pathname: `/clusters/${dara.URL.percentEncode(clusterId)}`,
    method: "GET",
    authType: "AK",
    style: "ROA",
    reqBodyType: "json",
    bodyType: "json",
  });

export interface AckEndpoints {
  /** host[:port]; `{regionId}` is replaced by the cluster's region. */
  csEndpoint: string;
  protocol: "https" | "http";
}

/** What the broker reads of a cluster: its RRSA settings, tags and region. */
export interface AckClusterDetail {
  clusterId: string;
  regionId: string | undefined;
  rrsa: { enabled: boolean; issuer: string | undefined; oidcArn: string | undefined };
  tags: { key: string; value: string }[];
}

interface RrsaFields {
  enabled?: unknown;
  issuer?: unknown;
  oidc_arn?: unknown;
  oidcArn?: unknown;
}

/** `rrsa_config` is a field of the answer; older answers carry it only inside the `meta_data` JSON string as `RRSAConfig`. */
export function rrsaOf(body: { rrsaConfig?: RrsaFields; metaData?: string }): AckClusterDetail["rrsa"] {
  let fields: RrsaFields | undefined = body.rrsaConfig;
  if (fields?.enabled === undefined && typeof body.metaData === "string") {
    try {
      fields = (JSON.parse(body.metaData) as { RRSAConfig?: RrsaFields }).RRSAConfig;
    } catch {
      fields = undefined;
    }
  }
  const text = (value: unknown) => (typeof value === "string" && value !== "" ? value : undefined);
  return { enabled: fields?.enabled === true || fields?.enabled === "true", issuer: text(fields?.issuer), oidcArn: text(fields?.oidcArn ?? fields?.oidc_arn) };
}

/** `GET /clusters/{ClusterId}` in the cluster's region, as `identity`. */
export async function describeClusterDetail(
  endpoints: AckEndpoints,
  identity: Identity,
  target: { clusterId: string; regionId: string },
  call: CallOptions,
): Promise<AckClusterDetail> {
  const operation = `ACK DescribeClusterDetail ${target.clusterId} (${target.regionId})`;
  try {
    const client = new OpenApi(sdkConfig(endpoints.csEndpoint.replaceAll("{regionId}", target.regionId), endpoints.protocol, identity));
    const raw: unknown = await client.callApi(
      describeClusterDetailParams(target.clusterId),
      new $OpenApiUtil.OpenApiRequest({ headers: {} }),
      runtimeOptions(call),
    );
    const response = dara.cast<DescribeClusterDetailResponse>(raw, new DescribeClusterDetailResponse({}));
    const body = response.body;
    return {
      clusterId: body?.clusterId ?? target.clusterId,
      regionId: body?.regionId,
      rrsa: rrsaOf((body ?? {}) as { rrsaConfig?: RrsaFields; metaData?: string }),
      tags: (body?.tags ?? []).flatMap((tag) => (typeof tag.key === "string" ? [{ key: tag.key, value: tag.value ?? "" }] : [])),
    };
  } catch (error) {
    throw toUpstreamError(error, operation);
  }
}
