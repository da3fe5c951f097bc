// What still works when device code never returns: all devices run on the
// remote's one JS thread, so an endless loop in a callback stops every
// device and every signal handler with it. A watchdog on a thread of its
// own sees the thread's heartbeat stop, says so once, and ends the process
// on SIGINT/SIGTERM, which nothing else would then answer.

/** How often the JS thread beats while its event loop turns. */
const BEAT_MS = 250;
/** Silence after which the watchdog says device code is stuck. */
export const STUCK_WARN_MS = 2000;
// Silence after which a signal is the watchdog's to answer: the JS thread
// answers it itself while it beats.
const SIGNAL_AFTER_MS = 1000;

// The watchdog's own code. It runs from a data: URL, because it starts
// after --sandbox, when the process may read no file (not even this
// one); and it must be plain JavaScript for that. It exits through libc's
// _exit: Deno.exit() in a worker ends only the worker.
const WATCHDOG_JS = `
const libc = Deno.dlopen("libc.so.6", {
  _exit: { parameters: ["i32"], result: "void" },
}).symbols;
const say = (line) =>
  Deno.stderr.writeSync(new TextEncoder().encode("iohub remote: " + line + "\\n"));
let beat = null;
let last = -1;
let since = Date.now();
let warned = false;
const silentFor = () => Date.now() - since;
self.onmessage = ({ data }) => {
  beat = new Int32Array(data.beat);
  setInterval(() => {
    const b = Atomics.load(beat, 0);
    if (b !== last) {
      last = b;
      since = Date.now();
      warned = false;
    } else if (!warned && silentFor() >= data.warnMs) {
      warned = true;
      say("device code has not returned for " + (silentFor() / 1000).toFixed(1) +
        " s: no device is served until it does; SIGINT or SIGTERM ends the process");
    }
  }, data.beatMs);
  for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143]]) {
    Deno.addSignalListener(signal, () => {
      if (silentFor() < data.signalAfterMs) return;
      say(signal + ": device code has not returned for " +
        (silentFor() / 1000).toFixed(1) + " s; exiting without closing the channels");
      libc._exit(status);
    });
  }
};
`;

/**
 * Watches the JS thread from a worker (see above) until disposed. Start it
 * after the sandbox is applied, so its thread is confined as well.
 */
export class Watchdog implements Disposable {
  readonly #beat = new Int32Array(new SharedArrayBuffer(4));
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #worker: Worker;

  /** Starts the worker and the heartbeat. */
  constructor() {
    this.#worker = new Worker(
      `data:text/javascript,${encodeURIComponent(WATCHDOG_JS)}`,
      { type: "module" },
    );
    this.#worker.postMessage({
      beat: this.#beat.buffer,
      beatMs: BEAT_MS,
      warnMs: STUCK_WARN_MS,
      signalAfterMs: SIGNAL_AFTER_MS,
    });
    this.#timer = setInterval(() => Atomics.add(this.#beat, 0, 1), BEAT_MS);
    // The heartbeat must not keep a remote that is done alive.
    Deno.unrefTimer(this.#timer);
  }

  /** Stops the heartbeat and the worker. */
  [Symbol.dispose](): void {
    clearInterval(this.#timer);
    this.#worker.terminate();
  }
}
