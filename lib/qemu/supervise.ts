// Supervising child processes: signals that tolerate an already reaped
// child, stopping by a deadline, and line-wise stream pumps.

import { within } from "../timer.ts";

/** Sends `signo`, ignoring a child that already exited. */
export function signalChild(
  child: Deno.ChildProcess,
  signo: Deno.Signal,
): void {
  try {
    child.kill(signo);
  } catch {
    // Already exited and reaped: nothing to signal.
  }
}

/**
 * Feeds each line of `stream` to `onLine` until end of stream. A callback
 * that throws does not stop the draining (a child blocked on a full pipe
 * would hang the run); the first such error rejects the returned promise
 * once the stream has ended.
 */
export async function pumpLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  onChunk?: (chunk: Uint8Array) => void,
): Promise<void> {
  const dec = new TextDecoder();
  let pending = "";
  let failure: { error: unknown } | null = null;
  const guard = (fn: () => void): void => {
    if (failure !== null) return;
    try {
      fn();
    } catch (error) {
      failure = { error };
    }
  };
  for await (const chunk of stream) {
    guard(() => onChunk?.(chunk));
    pending += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl).replace(/\r$/, "");
      guard(() => onLine(line));
      pending = pending.slice(nl + 1);
    }
  }
  pending += dec.decode();
  if (pending !== "") guard(() => onLine(pending.replace(/\r$/, "")));
  if (failure !== null) throw (failure as { error: unknown }).error;
}

/** How stopChild() ended a child. */
export interface Stopped {
  /** Its exit status. */
  status: Deno.CommandStatus;
  /** Whether it had to be signalled (it did not exit by itself). */
  signalled: boolean;
}

/**
 * Ends `child` by `deadline` (a performance.now() time): SIGTERM at once
 * when `askFirst`, else at the midpoint if it has not exited by itself by
 * then; SIGKILL at the deadline. A stopped or wedged child therefore costs
 * the time left to the deadline, never more.
 */
export async function stopChild(
  child: Deno.ChildProcess,
  deadline: number,
  askFirst: boolean,
): Promise<Stopped> {
  const left = (): number => Math.max(0, deadline - performance.now());
  let signalled = false;
  if (askFirst || !await within(child.status, left() / 2)) {
    signalChild(child, "SIGTERM");
    // A stopped child (SIGSTOP, a debugger) acts on SIGTERM once continued.
    signalChild(child, "SIGCONT");
    signalled = true;
  }
  if (!await within(child.status, left())) {
    signalChild(child, "SIGKILL");
    signalled = true;
  }
  return { status: await child.status, signalled };
}
