// Bounded waits: a timer that can be cancelled, and waiting for a promise
// at most so long. For every layer: module loading, the watchdog's start,
// supervising child processes.

/** A timer that can be cancelled so no test sees it leak. */
export function timer(ms: number): { done: Promise<void>; cancel(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => {
    id = setTimeout(resolve, ms);
  });
  return { done, cancel: () => clearTimeout(id) };
}

/** Waits for `p` at most `ms`; true when it settled in time. */
export async function within(
  p: Promise<unknown>,
  ms: number,
): Promise<boolean> {
  const t = timer(ms);
  try {
    return await Promise.race([p.then(() => true), t.done.then(() => false)]);
  } finally {
    t.cancel();
  }
}

/**
 * What `p` resolves to, or null as soon as `signal` aborts (at once if it
 * has); `p` itself runs on, unwatched.
 */
export async function unlessAborted<T>(
  p: Promise<T>,
  signal: AbortSignal,
): Promise<T | null> {
  if (signal.aborted) return null;
  let onAbort = (): void => {};
  const aborted = new Promise<null>((resolve) => {
    onAbort = () => resolve(null);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}
