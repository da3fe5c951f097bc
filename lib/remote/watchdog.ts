// What still works when device code never returns: all devices run on the
// remote's one JS thread, so an endless loop in a callback stops every
// device and every signal handler with it. A watchdog on a thread of its
// own sees the thread's heartbeat stop, says so once, and ends the process
// on SIGINT/SIGTERM, which nothing else would then answer.

import { jsWorker, LIBC_NAME } from "../../ffi/mod.ts";
import { within } from "../timer.ts";

/**
 * The JS thread's heartbeat: beat() after each request a device answered,
 * and a timer beats while the event loop turns (timers and promises of
 * device code ran and returned). enter() says whose code runs until the
 * next beat, so that a silence can name the device.
 */
export class Heartbeat {
  /**
   * Shared with the watchdog's thread: the beat count, and the index of
   * the device whose code runs plus 1 (0: none known).
   */
  readonly shared: Int32Array<SharedArrayBuffer> = new Int32Array(
    new SharedArrayBuffer(8),
  );

  /** Device `index` (its place among the remote's devices) runs now. */
  enter(index: number): void {
    Atomics.store(this.shared, 1, index + 1);
  }

  /** Device code returned. */
  beat(): void {
    Atomics.store(this.shared, 1, 0);
    Atomics.add(this.shared, 0, 1);
  }
}

// How often the event loop beats, and the watchdog looks: seldom, since an
// idle remote pays for each turn. A healthy thread can look silent for up
// to two of these (the two timers drift), hence the margins below.
const BEAT_MS = 1000;
// Silence after which the watchdog says device code is stuck.
const WARN_MS = 3000;
// Silence after which a signal is the watchdog's to answer: until then the
// JS thread may still come back and answer it itself, cleanly.
const SIGNAL_AFTER_MS = 2500;

// The watchdog's own code. It runs from a data: URL, because it starts
// after --sandbox, when the process may read no file (not even this one),
// and it must be plain JavaScript for that. It exits through libc's _exit:
// Deno.exit() in a worker ends only the worker.
const WATCHDOG_JS = `
let beat = null;
let last = -1;
let since = Date.now();
let warned = false;
let pending = null;
let sockets = [];
const silentFor = () => Date.now() - since;
const secs = () => (silentFor() / 1000).toFixed(1);
// Each file still the socket the remote made (same device and inode).
const removeSockets = () => {
  for (const { path, dev, ino } of sockets) {
    try {
      const st = Deno.lstatSync(path);
      if (st.isSocket && st.dev === dev && st.ino === ino) Deno.removeSync(path);
    } catch {
      // Gone already, or not ours to remove.
    }
  }
};
self.onmessage = async ({ data }) => {
  if (data.sockets !== undefined) {
    sockets = data.sockets;
    return;
  }
  const libc = Deno.dlopen(data.libc, {
    _exit: { parameters: ["i32"], result: "void" },
    gettid: { parameters: [], result: "i32" },
  }).symbols;
  const say = (line) =>
    Deno.stderr.writeSync(new TextEncoder().encode("iohub remote: " + line + "\\n"));
  beat = new Int32Array(data.beat);
  const code = () => {
    const device = data.names[Atomics.load(beat, 1) - 1];
    return device === undefined ? "device code" : "device code of " + device;
  };
  const exitFor = (signal) => {
    say(signal + ": " + code() + " has not returned for " + secs() +
      " s; exiting without closing the channels");
    removeSockets();
    libc._exit(data.statuses[signal]);
  };
  const check = () => {
    const b = Atomics.load(beat, 0);
    // A beat since the signal came: the JS thread is back and answers it.
    if (pending !== null && b !== pending.beat) pending = null;
    if (b !== last) {
      last = b;
      since = Date.now();
      warned = false;
    } else if (pending !== null && silentFor() >= data.signalAfterMs) {
      exitFor(pending.signal);
    } else if (!warned && silentFor() >= data.warnMs) {
      warned = true;
      say(code() + " has not returned for " + secs() +
        " s: no device is served until it does; SIGINT or SIGTERM ends the process");
    }
  };
  setInterval(check, data.beatMs);
  for (const signal of Object.keys(data.statuses)) {
    Deno.addSignalListener(signal, () => {
      if (silentFor() >= data.signalAfterMs) exitFor(signal);
      else pending ??= { signal, beat: Atomics.load(beat, 0) };
    });
  }
  // A first turn of the timers now, so their start-up cost is paid before
  // the remote serves rather than in its first idle second.
  check();
  await new Promise((turned) => setTimeout(turned, 0));
  self.postMessage({ tid: libc.gettid() });
};
`;

// Starting the worker (an isolate, its module, libc) takes tens of ms of
// CPU; it is waited for before the remote serves, but not for ever.
const START_TIMEOUT_MS = 5000;

/** What a Watchdog watches and how it answers. */
export interface WatchdogOptions {
  /** The JS thread's heartbeat. */
  heartbeat: Heartbeat;
  /** The devices' ids, by the index Heartbeat.enter() is given. */
  names: readonly string[];
  /** The signals it answers while the thread is silent: name -> exit status. */
  statuses: Readonly<Record<string, number>>;
  /** Where a failure of the watchdog itself is reported. */
  log: (line: string) => void;
}

/**
 * Watches a Heartbeat from a worker (see above) until disposed: reports a
 * silence, naming the device whose code runs when known, and answers the
 * signals in `statuses` while it lasts. Under --sandbox, start it (again)
 * after the sandbox is applied, so that its thread is confined as well.
 */
export class Watchdog implements Disposable {
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #worker: Worker;

  /**
   * Starts the worker and the event loop's beat of the heartbeat; resolves
   * once the worker watches (or failed, logged), so that its start-up is
   * over before what it watches begins.
   */
  static async start(options: WatchdogOptions): Promise<Watchdog> {
    const dog = new Watchdog(options);
    const watching = new Promise<void>((w) =>
      dog.#worker.onmessage = (e: MessageEvent<{ tid: number }>) => {
        dog.#tid = e.data.tid;
        w();
      }
    );
    await within(Promise.race([watching, dog.#failed]), START_TIMEOUT_MS);
    return dog;
  }

  #tid = -1;

  /** The thread the watchdog runs on (-1 until it watches). */
  get tid(): number {
    return this.#tid;
  }

  readonly #failed: Promise<void>;

  private constructor(
    { heartbeat, names, statuses, log }: WatchdogOptions,
  ) {
    this.#worker = jsWorker(WATCHDOG_JS);
    // A watchdog that cannot run must not take the remote down with it.
    this.#failed = new Promise((failed) => {
      this.#worker.onerror = (e) => {
        e.preventDefault();
        log(`the watchdog stopped: ${e.message}`);
        failed();
      };
    });
    this.#worker.postMessage({
      beat: heartbeat.shared.buffer,
      names,
      libc: LIBC_NAME,
      statuses,
      beatMs: BEAT_MS,
      warnMs: WARN_MS,
      signalAfterMs: SIGNAL_AFTER_MS,
    });
    this.#timer = setInterval(() => heartbeat.beat(), BEAT_MS);
    // The heartbeat must not keep a remote that is done alive.
    Deno.unrefTimer(this.#timer);
  }

  /**
   * Has the socket files at `paths` removed should the watchdog end the
   * process, if they are still the sockets they are now. Without
   * --sandbox: a sandboxed process may remove no file (see socket_reaper).
   */
  removeOnExit(paths: readonly string[]): void {
    const sockets = paths.map((path) => {
      const st = Deno.lstatSync(path);
      return { path, dev: st.dev, ino: st.ino };
    });
    this.#worker.postMessage({ sockets });
  }

  /** Stops the event loop's beat and the worker. */
  [Symbol.dispose](): void {
    clearInterval(this.#timer);
    this.#worker.terminate();
  }
}
