// Parks Deno's blocking-pool threads for good: each one is given a poll(2)
// that never returns, so code that would run on such a thread (async file
// ops, non-blocking FFI calls) runs on a thread created later instead.

import { Errno, SysError } from "./errors.ts";
import { closeFd, cString, O_CLOEXEC, openPath, pipe, preadFd } from "./fd.ts";
import { libc } from "./libc.ts";
import { addressOf, Syscall, syscall } from "./syscalls.ts";

const text = new Uint8Array(256);
const POLLIN = 1;

/** A thread of this process, watched through /proc/self/task/TID/syscall. */
export interface Watched {
  /** The thread id. */
  tid: number;
  /** An open fd on its /proc syscall file (owned: see unwatch()). */
  syscallFd: number;
}

// The pipe and the pollfd the parked threads wait on: never written, never
// freed, for as long as the process lives.
let parking: { pollfd: Uint8Array<ArrayBuffer>; fds: [number, number] } | null =
  null;

const O_DIRECTORY = 0o200000;
const dents = new Uint8Array(4096);

/** The thread ids of this process, from /proc/self/task read by getdents64. */
function taskIds(): number[] {
  // Deno refuses its own /proc/PID/task to code without --allow-all.
  const dir = openPath("/proc/self/task", O_DIRECTORY);
  const tids: number[] = [];
  try {
    // SAFETY: `dents` is module-scoped; the kernel writes it during the call.
    const addr = addressOf(dents);
    for (;;) {
      const n = syscall(
        "getdents64",
        Syscall.getdents64,
        BigInt(dir),
        addr,
        BigInt(dents.length),
      );
      if (n === 0) return tids;
      // struct linux_dirent64: u64 ino@0, s64 off@8, u16 reclen@16,
      // u8 type@18, char name[]@19.
      const v = new DataView(dents.buffer);
      for (let off = 0; off < n; off += v.getUint16(off + 16, true)) {
        const end = dents.indexOf(0, off + 19);
        const name = new TextDecoder().decode(dents.subarray(off + 19, end));
        if (/^\d+$/.test(name)) tids.push(Number(name));
      }
    }
  } finally {
    closeFd(dir);
  }
}

/** The contents of a /proc file, read whole through its open fd. */
function procText(fd: number): string {
  const decoder = new TextDecoder();
  let out = "";
  for (let off = 0;;) {
    const n = preadFd(fd, text, off);
    if (n === 0) return out + decoder.decode();
    out += decoder.decode(text.subarray(0, n), { stream: true });
    off += n;
  }
}

/** A thread of this process and its name (/proc/self/task/TID/comm). */
export interface NamedThread {
  /** The thread id. */
  tid: number;
  /** Its name, at most 15 bytes ("tokio-runtime-w", "worker-1"...). */
  name: string;
}

// Whether a /proc file of a thread could not be opened because the thread
// ended between listing and opening.
function vanished(e: unknown): boolean {
  return e instanceof SysError &&
    (e.errno === Errno.ENOENT || e.errno === Errno.ESRCH);
}

/**
 * Each thread's /proc/self/task/TID/`file`, read whole; threads that end
 * meanwhile are left out.
 */
function taskFiles(file: string): { tid: number; text: string }[] {
  const out: { tid: number; text: string }[] = [];
  for (const tid of taskIds()) {
    let fd: number;
    try {
      fd = openPath(`/proc/self/task/${tid}/${file}`, 0);
    } catch (e) {
      if (vanished(e)) continue;
      throw e;
    }
    try {
      out.push({ tid, text: procText(fd) });
    } finally {
      closeFd(fd);
    }
  }
  return out;
}

/** The threads of this process with their names; ones that end meanwhile are left out. */
export function namedThreads(): NamedThread[] {
  return taskFiles("comm").map(({ tid, text }) => ({ tid, name: text.trim() }));
}

/**
 * The processes this one started and that still run (or await reaping).
 * Throws SysError where the kernel lists no children (a kernel without
 * CONFIG_PROC_CHILDREN): an empty list would then prove nothing.
 */
export function childProcesses(): number[] {
  const lists = taskFiles("children");
  if (lists.length === 0) {
    throw new SysError(
      "open /proc/self/task/*/children",
      Errno.ENOENT,
      "the kernel lists no child processes (CONFIG_PROC_CHILDREN)",
    );
  }
  return lists.flatMap(({ text }) =>
    text.split(/\s+/).filter((pid) => pid !== "").map(Number)
  );
}

/**
 * The threads of this process whose name is `name` (Deno's blocking pool:
 * "tokio-runtime-w"), each with an open fd on its /proc syscall file. Call
 * before anything that may deny opening /proc; release with unwatch().
 */
export function watchThreads(name: string): Watched[] {
  const out: Watched[] = [];
  try {
    for (const t of namedThreads()) {
      if (t.name !== name) continue;
      try {
        out.push({
          tid: t.tid,
          syscallFd: openPath(`/proc/self/task/${t.tid}/syscall`, 0),
        });
      } catch (e) {
        if (!vanished(e)) throw e;
      }
    }
  } catch (e) {
    unwatch(out);
    throw e;
  }
  return out;
}

/** Closes the fds watchThreads() opened. */
export function unwatch(threads: Watched[]): void {
  for (const t of threads) closeFd(t.syscallFd);
}

/** Whether thread `t` sits in poll(2) on `pollfd` now. */
function isParked(t: Watched, pollAddr: bigint): boolean {
  const f = procText(t.syscallFd).split(" ");
  return Number(f[0]) === Syscall.poll && BigInt(f[1]) === pollAddr;
}

/**
 * Hands poll calls that never return to the blocking pool until every
 * thread of `threads` is seen inside one (each call goes to an idle thread;
 * one that lands on a thread created meanwhile parks that one). Returns
 * false if some thread was still free after `attempts` calls.
 */
export async function parkThreads(
  threads: Watched[],
  attempts: number,
): Promise<boolean> {
  if (parking === null) {
    const pollfd = new Uint8Array(8);
    const fds = pipe();
    // struct pollfd: int fd@0, short events@4, short revents@6.
    new DataView(pollfd.buffer).setInt32(0, fds[0], true);
    new DataView(pollfd.buffer).setInt16(4, POLLIN, true);
    parking = { pollfd, fds };
  }
  // SAFETY: `parking.pollfd` is referenced from module scope for the life
  // of the process, so the parked calls never see it freed.
  const addr = addressOf(parking.pollfd);
  const free = (): Watched[] => threads.filter((t) => !isParked(t, addr));
  for (let i = 0; i < attempts && free().length > 0; i++) {
    const before = free().length;
    // Never settles, never rejects: nothing to await or catch.
    void libc.poll_async(parking.pollfd, 1n, -1);
    // A pool thread takes the call within microseconds; wait a little for
    // one of ours to show up in it before handing out the next.
    for (let k = 0; k < 50 && free().length === before; k++) {
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  return free().length === 0;
}

/**
 * Whether a thread of the blocking pool (where async file ops and
 * non-blocking FFI calls run) can open the directory `path`: a check that
 * parking left no unconfined thread to run them.
 */
export async function poolCanOpen(path: string): Promise<boolean> {
  const name = cString(path);
  const fd = await libc.open_async(name, O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return false;
  closeFd(fd);
  return true;
}
