/**
 * The emulator's notion of "now" for everything that expires: STS sessions, CR passwords and OIDC
 * token lifetimes. Signature freshness deliberately does not use it, because the SDKs stamp requests
 * with the real time.
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Moves time forward (or back, with a negative value). */
  advance(ms: number): void;
  /** Jumps to an absolute epoch-millisecond time. */
  set(ms: number): void;
}

export interface ClockOptions {
  /** Where the clock starts; default the real time. */
  start?: number;
  /** A frozen clock moves only through `advance`/`set`; the default one ticks with the real time. */
  frozen?: boolean;
}

export function createClock(options: ClockOptions = {}): Clock {
  if (options.frozen === true) {
    let current = options.start ?? Date.now();
    return {
      now: () => current,
      advance: (ms) => {
        current += ms;
      },
      set: (ms) => {
        current = ms;
      },
    };
  }
  let offset = options.start === undefined ? 0 : options.start - Date.now();
  return {
    now: () => Date.now() + offset,
    advance: (ms) => {
      offset += ms;
    },
    set: (ms) => {
      offset = ms - Date.now();
    },
  };
}
