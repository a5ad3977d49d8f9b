import { defineConfig } from "vitest/config";

// Two projects: plain suites (emulator, broker, pure planning) and the ones that need the
// real kube-apiserver + etcd (file names ending in `.kube.test.ts`), which share one control plane.
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 180_000,
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/**/*.kube.test.ts", "test/**/*.reliability.test.ts", "node_modules/**"],
        },
      },
      {
        extends: true,
        test: {
          name: "kube",
          include: ["test/**/*.kube.test.ts"],
          globalSetup: ["test/kube/global-setup.ts"],
        },
      },
    ],
  },
});
