import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

// The long reliability runs (`npm run test:reliability`): load, memory over 10,000 requests, slow
// clients, upstream faults in real time, SIGKILL trials on a real apiserver. One file at a time, so
// that the load and memory figures are not another file's noise; the Kubernetes control plane is
// the `kube` project's.
export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    name: "reliability",
    include: ["test/reliability/**/*.reliability.test.ts", "test/reliability/upstream-schedules.test.ts"],
    env: { RELIABILITY_SCHEDULE_RUNS: "3000" },
    globalSetup: ["test/kube/global-setup.ts"],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
