/** `local --with-cluster` without the Kubernetes binaries: one line naming the build command, nothing started. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { controlPlaneBinaries } from "../../../cli/commands/local.ts";
import { findKubeBinaries } from "../../../cli/sandbox/kube-binaries.ts";
import { AcrCredentialError } from "../../../shared/errors.ts";
import { cli } from "./support.ts";

describe("acr-credential local --with-cluster without the Kubernetes binaries", () => {
  it("names the build command when they are not built", async () => {
    const empty = await mkdtemp(join(tmpdir(), "no-kube-"));
    try {
      const error = await controlPlaneBinaries(findKubeBinaries({}, empty)).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(AcrCredentialError);
      expect((error as AcrCredentialError).code).toBe("ControlPlaneUnavailable");
      expect((error as Error).message).toBe(
        "--with-cluster needs the Kubernetes test binaries: kube-apiserver and etcd not found: run `bash test/kube/build.sh` (needs Go 1.26) or set KUBEBUILDER_ASSETS",
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it("fails in one line before starting anything when a named binary is missing", async () => {
    const stateDir = await mkdtemp(join(tmpdir(), "no-kube-state-"));
    try {
      const result = await cli(["local", "--port", "0", "--state-dir", stateDir, "--with-cluster"], {
        env: { PATH: process.env.PATH, HOME: stateDir, TEST_ASSET_KUBE_APISERVER: join(stateDir, "absent") },
      });
      expect(result.stderr.trim().split("\n")).toEqual([
        `acr-credential local: --with-cluster needs the Kubernetes test binaries: TEST_ASSET_KUBE_APISERVER=${join(stateDir, "absent")} is not an executable file; fix it or unset it [ControlPlaneUnavailable]`,
      ]);
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(await readdir(stateDir)).toEqual([]);
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
