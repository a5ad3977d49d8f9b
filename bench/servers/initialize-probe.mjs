// Function Compute's initializer in a fresh process: require() the bundle, then time
// `index.initialize` (configuration parsed, runtime built) and print {"initMs": …} on success.
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

const { initialize } = createRequire(import.meta.url)(process.argv[2]);

const started = performance.now();
initialize({ requestId: "initialize-probe", function: { name: "broker", timeout: 30 } }, (error) => {
  if (error) {
    console.error(`initialize-probe: ${error.message}`);
    process.exitCode = 1;
    return;
  }
  console.log(JSON.stringify({ initMs: performance.now() - started }));
});
