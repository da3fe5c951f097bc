// The part of a launch before QEMU starts: the remote loads and validates
// its devices, then writes one byte to its --ready-fd pipe. Until then its
// stderr is held back, so that a remote refusing a device (exit 2) ends
// the launch with that one line instead of QEMU failing every config read.

import {
  closeFd,
  Errno,
  pollReadable,
  readFd,
  SysError,
} from "../../ffi/mod.ts";
import {
  describeStatus,
  EXIT,
  lastRemoteLine,
  type LaunchOutcome,
  outcome,
} from "./outcome.ts";
import { pumpLines, stopChild } from "./supervise.ts";

/** The remote's stderr, read from its start. */
export interface RemoteOut {
  /** Every line so far. */
  lines: string[];
  /** The pump (ends when the remote's stderr closes). */
  done: Promise<void>;
  /**
   * Passes the lines held so far to onLine, and later ones as they come;
   * without the last when it became the launch's own message.
   */
  release(skipLast: boolean): void;
}

/** Starts reading the remote's stderr, holding its lines until release(). */
export function pumpRemote(
  remote: Deno.ChildProcess,
  onLine: ((line: string) => void) | undefined,
): RemoteOut {
  const lines: string[] = [];
  let held: string[] | null = [];
  const done = pumpLines(remote.stderr, (line) => {
    lines.push(line);
    if (held !== null) held.push(line);
    else onLine?.(line);
  });
  // Awaited later; until then not an unhandled rejection ending the process.
  done.catch(() => {});
  return {
    lines,
    done,
    release(skipLast: boolean): void {
      const out = held ?? [];
      held = null;
      for (const line of skipLast ? out.slice(0, -1) : out) onLine?.(line);
    },
  };
}

/**
 * Reads the remote's ready byte from `fd` (non-blocking): true once it
 * came, false at EOF (the remote failed before it was ready, or exited).
 * Settles only once the remote wrote or its end of the pipe closed.
 */
async function readyByte(fd: number): Promise<boolean> {
  const buf = new Uint8Array(1);
  for (;;) {
    try {
      return readFd(fd, buf) === 1;
    } catch (e) {
      if (!(e instanceof SysError && e.errno === Errno.EAGAIN)) throw e;
    }
    // On a worker thread, so the deadline and signals are still seen; a
    // hang-up wakes it too, and the read above then finds the EOF.
    await pollReadable(fd, -1);
  }
}

/** How waiting for the remote to be ready ended. */
export type Readiness = "ready" | "failed" | "timeout" | "abort";

/** The wait for readiness, and the pipe's read end being closed. */
export interface ReadyWait {
  /** What came first. */
  readiness: Readiness;
  /**
   * Settles once the read end is closed: at once when the remote was
   * ready, else once its write end closed (the remote ended), so stop the
   * remote before awaiting it.
   */
  closed: Promise<void>;
}

/**
 * Waits until the remote is ready on `fd` (our non-blocking read end of
 * its --ready-fd pipe, which this now owns and closes), it ends first, the
 * deadline passes or `aborted` resolves.
 */
export async function awaitReady(
  remote: Deno.ChildProcess,
  fd: number,
  deadline: Promise<void> | null,
  aborted: Promise<void>,
): Promise<ReadyWait> {
  const reading = readyByte(fd);
  const closed = reading.then(() => {}, () => {}).finally(() => closeFd(fd));
  const racers: Promise<Readiness>[] = [
    reading.then((ok) => ok ? "ready" : "failed", () => "failed"),
    remote.status.then(() => "failed"),
    aborted.then(() => "abort"),
  ];
  if (deadline !== null) racers.push(deadline.then(() => "timeout"));
  const readiness = await Promise.race(racers);
  return { readiness, closed };
}

/**
 * The remote ended, or is to be stopped (`stop`: the status and the reason
 * for a timeout or an abort), before it was ready: QEMU was not started.
 * A remote that exited 2 refused its command line or a device (a module
 * that does not load, a factory that throws, a malformed model): its last
 * line becomes the launch's one line, with exit 2.
 */
export async function beforeReady(
  remote: Deno.ChildProcess,
  out: RemoteOut,
  wait: ReadyWait,
  stop: { status: number; why: string } | null,
  stopBy: number,
): Promise<LaunchOutcome> {
  const r = await stopChild(remote, stopBy, stop !== null);
  await Promise.all([out.done.catch(() => {}), wait.closed]);
  const why = lastRemoteLine(out.lines)?.replace(/^iohub: /, "");
  if (stop !== null) {
    out.release(false);
    return outcome(
      stop.status,
      stop.status === EXIT.TIMEOUT ? "timeout" : "aborted",
      `${stop.why} before the remote was ready (loading its devices); stopped the remote, QEMU was not started`,
      { remote: r.status },
    );
  }
  if (!r.signalled && r.status.code === EXIT.USAGE && why !== undefined) {
    out.release(true);
    return outcome(EXIT.USAGE, "remote-refused", why, { remote: r.status });
  }
  out.release(false);
  const ended = r.signalled
    ? "closed its ready pipe without being ready; stopped it"
    : describeStatus(r.status);
  return outcome(
    EXIT.REMOTE,
    "remote-failed",
    `remote ${ended}${
      why === undefined ? "" : ` (${why})`
    } before it was ready; QEMU was not started`,
    { remote: r.status },
  );
}
