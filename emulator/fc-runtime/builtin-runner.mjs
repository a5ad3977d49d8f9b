// One instance of an FC built-in Node.js runtime: loads the function's code with require() as the
// runtime does, runs its initializer (`initialize(context, callback)`, the cold start), then serves
// the invocations the parent sends over the IPC channel one at a time:
// `{type: "invoke", id, event, context}` → `{type: "result", id, value}` or `{type: "error", id, ...}`.
// The event arrives as a Buffer, as in the runtime.
import { createRequire } from "node:module";
import { join } from "node:path";
import "./clock-preload.mjs";

const [codeDir, handlerName = "index.handler", initializerName = "index.initialize"] = process.argv.slice(2);

function exported(name) {
  const dot = name.lastIndexOf(".");
  const module = createRequire(join(codeDir, "noop.js"))(join(codeDir, name.slice(0, dot)));
  return module[name.slice(dot + 1)];
}

const describe = (error) => ({
  errorMessage: error instanceof Error ? error.message : String(error),
  errorType: error instanceof Error ? error.name : "Error",
});

function call(fn, args) {
  // Callback-style functions take one more parameter than they are given.
  if (fn.length > args.length) return new Promise((resolve, reject) => fn(...args, (error, value) => (error ? reject(error) : resolve(value))));
  return Promise.resolve(fn(...args));
}

process.channel?.ref();
process.on("message", async (message) => {
  if (message?.type === "init") {
    try {
      const initializer = exported(initializerName);
      if (typeof initializer === "function") await call(initializer, [message.context]);
      if (typeof exported(handlerName) !== "function") throw new Error(`${handlerName} is not a function`);
      process.send({ type: "ready" });
    } catch (error) {
      process.send({ type: "init-error", ...describe(error) });
    }
    return;
  }
  if (message?.type !== "invoke") return;
  try {
    const value = await call(exported(handlerName), [Buffer.from(message.event, "utf8"), message.context]);
    process.send({ type: "result", id: message.id, value });
  } catch (error) {
    process.send({ type: "error", id: message.id, ...describe(error) });
  }
});
