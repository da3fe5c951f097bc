// Errors device code throws outside a request (from a timer or a promise):
// logged with the devices they came from instead of ending the remote.

import type { LogSink } from "../log.ts";

// Frames in iohub's own code (lib/, ffi/) say nothing of which device ran:
// every device's timer callback passes through them alike.
const OWN_CODE = [
  new URL("../", import.meta.url).href,
  new URL("../../ffi/", import.meta.url).href,
];

function isOwnFrame(line: string): boolean {
  return OWN_CODE.some((own) => line.includes(own));
}

// How often an error that keeps coming is reported again (ms), and how
// many distinct errors are remembered for that.
const REPEAT_MS = 10_000;
const MAX_KNOWN = 256;

/**
 * The ids of the devices whose code is on `stack` (`owners`: module URL ->
 * device ids): those whose module has a frame there, else, for code in a
 * file the module imports, those whose module's directory holds a frame's
 * file (all of them when modules share a directory: better a device too
 * many than none).
 */
export function devicesOnStack(
  stack: string,
  owners: ReadonlyMap<string, readonly string[]>,
): string[] {
  const frames = stack.split("\n").filter((line) => !isOwnFrame(line))
    .map(decoded).join("\n");
  const named = (match: (href: string) => boolean): string[] =>
    [...owners].filter(([href]) => match(decoded(href))).flatMap(([, ids]) =>
      ids
    );
  const exact = named((href) => frames.includes(href));
  if (exact.length > 0) return exact;
  return named((href) =>
    frames.includes(href.slice(0, href.lastIndexOf("/") + 1))
  );
}

/**
 * Where device code threw: the URL, line and column of the first frame of
 * `stack` outside iohub's own code, or null when there is none.
 */
export function deviceFrame(stack: string): string | null {
  for (const line of stack.split("\n").slice(1)) {
    if (isOwnFrame(line)) continue;
    const at = /((?:file|https?|data):.*:\d+:\d+)\)?\s*$/.exec(line);
    if (at !== null) return at[1];
  }
  return null;
}

// The same error again is the same throw from the same calls, whatever its
// message says (a timer's message often carries a count or a value).
function throwSite(e: unknown, stack: string): string {
  const frames = stack.split("\n").filter((line) => /^\s+at /.test(line));
  if (!(e instanceof Error) || frames.length === 0) return stack;
  return `${e.name}\n${frames.join("\n")}`;
}

// V8 writes a frame's URL with some characters decoded (a space in a file
// name, not in a directory's): both sides are compared decoded.
function decoded(text: string): string {
  try {
    return decodeURI(text);
  } catch {
    return text;
  }
}

/**
 * While it lives, an error thrown by device code outside a request (a
 * timer, a promise) is logged with its stack instead of ending the
 * process, naming the devices whose code is on the stack (see
 * devicesOnStack). It must be in place before the first device is built:
 * a factory's timer may fire, or its promise reject, at the first await
 * after it, long before the remote serves.
 */
export class DeviceErrorReports implements Disposable {
  readonly #onError: (ev: ErrorEvent) => void;
  readonly #onRejection: (ev: PromiseRejectionEvent) => void;

  readonly #repeats = new Map<string, { last: number; since: number }>();

  /** Installs the handlers; `owners` maps module URLs to device ids. */
  constructor(log: LogSink, owners: ReadonlyMap<string, readonly string[]>) {
    const report = (what: string, e: unknown): void => {
      const stack = e instanceof Error ? (e.stack ?? e.message) : String(e);
      const ids = devicesOnStack(stack, owners);
      const of = ids.length === 0 ? "" : ` of ${ids.join(", ")}`;
      const seen = this.#repeated(`${what}\n${throwSite(e, stack)}`);
      if (seen === null) {
        log(`${what} in device code${of}: ${stack}`, "error");
      } else if (seen > 0) {
        const times = seen === 1 ? "once" : `${seen} times`;
        log(
          `${what} in device code${of} again, ${times} since it was last logged: ${
            stack.split("\n")[0]
          }`,
          "error",
        );
      }
    };
    this.#onError = (ev) => {
      ev.preventDefault();
      report("uncaught error", ev.error);
    };
    this.#onRejection = (ev) => {
      ev.preventDefault();
      report("unhandled rejection", ev.reason);
    };
    globalThis.addEventListener("error", this.#onError);
    globalThis.addEventListener("unhandledrejection", this.#onRejection);
  }

  // A timer that throws on every tick must not flood the log: the first
  // report is whole, then one line at most every REPEAT_MS with how often
  // it came. null: new; 0: not yet to be reported; else the count.
  #repeated(key: string): number | null {
    const now = performance.now();
    const seen = this.#repeats.get(key);
    if (seen === undefined) {
      if (this.#repeats.size >= MAX_KNOWN) this.#repeats.clear();
      this.#repeats.set(key, { last: now, since: 0 });
      return null;
    }
    seen.since++;
    if (now - seen.last < REPEAT_MS) return 0;
    const count = seen.since;
    seen.last = now;
    seen.since = 0;
    return count;
  }

  /** Removes the handlers. */
  [Symbol.dispose](): void {
    globalThis.removeEventListener("error", this.#onError);
    globalThis.removeEventListener("unhandledrejection", this.#onRejection);
  }
}
