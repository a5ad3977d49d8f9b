/** `acr-credential doctor`'s mistakes, caught before it touches a cluster: one line, exit 2. */
import { describe, expect, it } from "vitest";
import { cli } from "./support.ts";

const noCluster = { PATH: process.env.PATH, HOME: "/nonexistent" };

describe("acr-credential doctor mistakes", () => {
  it.each([
    [
      ["--config-map", "acr-configuration"],
      "acr-credential doctor: --config-map must be NAMESPACE/NAME, got 'acr-configuration'; see 'acr-credential doctor --help' [UsageError]",
    ],
    [
      ["--service-account", "aliyun-acr-credential-helper"],
      "acr-credential doctor: --service-account must be NAMESPACE/NAME, got 'aliyun-acr-credential-helper'; see 'acr-credential doctor --help' [UsageError]",
    ],
    [[], "acr-credential doctor: no Kubernetes cluster configured; run in a cluster or pass --kubeconfig [FileUnreadable]"],
  ])("%j", async (args, line) => {
    const result = await cli(["doctor", ...args], { env: noCluster });
    expect(result.stderr.trim().split("\n")).toEqual([line]);
    expect(result.stdout).toBe("");
    expect(result.code).toBe(2);
  });
});
