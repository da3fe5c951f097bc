// Test helper: fd-leak checks by comparing /proc/<pid>/fd before and after.

import { assertEquals } from "@std/assert";

/** The open fd numbers of process `pid` (default: this one), sorted. */
export function openFds(pid: number | "self" = "self"): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) out.push(Number(e.name));
  return out.sort((a, b) => a - b);
}

/** Runs `fn` and asserts this process has the same fds afterwards. */
export async function assertNoFdLeak(
  fn: () => void | Promise<void>,
): Promise<void> {
  const before = openFds();
  await fn();
  const after = openFds();
  assertEquals(after, before, "fds leaked or closed by the test body");
}

/**
 * The open fds of remote `pid` once their count is `count`, waiting up to
 * `ms` for it: a remote closes the fds its peers sent on a thread of their
 * own (ffi/peer_fd.ts), a moment after the request that dropped them.
 */
export async function fdsOnceCount(
  pid: number,
  count: number,
  ms = 2000,
): Promise<number[]> {
  const end = performance.now() + ms;
  let fds = openFds(pid);
  while (fds.length !== count && performance.now() < end) {
    await new Promise((done) => setTimeout(done, 10));
    fds = openFds(pid);
  }
  return fds;
}
