// Preloaded (`node --import`) into every instance the FC model starts: the instance's `Date.now()`
// follows the model's clock, whose offset from the real time the parent sends over the IPC channel
// (`{type: "clock", id, offsetMs}`, acknowledged with `{type: "clock-set", id}`), so an hour of credential
// lifetime passes in minutes. `new Date()` keeps the real time: request signatures carry it.
const realNow = Date.now.bind(Date);
let offsetMs = Number(process.env.FC_EMULATOR_CLOCK_OFFSET_MS ?? 0);
Date.now = () => realNow() + offsetMs;

if (typeof process.send === "function") {
  process.on("message", (message) => {
    if (message?.type !== "clock") return;
    offsetMs = Number(message.offsetMs);
    process.send({ type: "clock-set", id: message.id });
  });
  // The channel must not keep a finished program alive, and an instance ends with the model that
  // started it (a stopped benchmark leaves no processes behind).
  process.channel?.unref();
  process.on("disconnect", () => process.exit(0));
}
