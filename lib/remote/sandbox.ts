// The remote's sandbox (`iohub remote --sandbox`): once devices are loaded
// and channels connected, the process confines itself with Landlock and a
// seccomp filter, so a hostile device model can reach nothing it was not given.

import {
  AccessFs,
  AccessNet,
  childProcesses,
  denySyscalls,
  fsRightsOfAbi,
  landlockAbi,
  namedThreads,
  parkThreads,
  poolCanOpen,
  Ruleset,
  Scope,
  Syscall,
  SysError,
  unwatch,
  watchThreads,
} from "../../ffi/mod.ts";

/** What the sandbox still allows. */
export interface SandboxOptions {
  /** Files and directories the devices may read and write (not execute). */
  allowPaths: readonly string[];
}

/**
 * What the sandbox may leave unconfined: the threads that ran before any
 * device code did (`before`, from threadsBeforeDevices()), and iohub's own
 * threads and processes started since (the watchdog it replaces, the
 * socket reaper).
 */
export interface SandboxExemptions {
  /** Thread ids of the process before device code ran. */
  before: readonly number[];
  /** Thread ids. */
  tids: readonly number[];
  /** Child process ids. */
  pids: readonly number[];
}

/**
 * The process's threads now: call before loading device modules, and hand
 * the result to applySandbox(), which refuses threads device code started
 * since (a Worker stays free of Landlock, whatever it renames its thread).
 */
export function threadsBeforeDevices(): number[] {
  return namedThreads().map((t) => t.tid);
}

/** The sandbox could not be set up (no Landlock, a path that is missing). */
export class SandboxError extends Error {
  /** Builds the error; `detail` says what is missing. */
  constructor(detail: string) {
    super(`--sandbox: ${detail}`);
    this.name = "SandboxError";
  }
}

/** Landlock ABI 6 is the first to scope signals and abstract sockets. */
export const MIN_LANDLOCK_ABI = 6;

// Read-write, without execute and without making device nodes.
const RW_FILE = AccessFs.READ_FILE | AccessFs.WRITE_FILE | AccessFs.TRUNCATE;
const RW_DIR = RW_FILE | AccessFs.READ_DIR | AccessFs.REMOVE_DIR |
  AccessFs.REMOVE_FILE | AccessFs.MAKE_DIR | AccessFs.MAKE_REG |
  AccessFs.MAKE_SOCK | AccessFs.MAKE_FIFO | AccessFs.MAKE_SYM |
  AccessFs.REFER;

// Landlock binds only the calling thread and the threads it creates later
// (ABI 8 adds a flag for all threads; this kernel has ABI 7). Deno's
// blocking pool, which runs async file ops and non-blocking FFI calls,
// already runs: its threads are parked for good in a poll(2), so the pool
// grows new threads, spawned from the confined main thread.
const POOL_THREAD = "tokio-runtime-w";
// What must not happen from any thread is also refused by seccomp, which
// covers them all (TSYNC): no exec, no socket(2) (every TCP connection,
// and connect() to a UNIX socket path, which Landlock ABI 7 does not
// mediate; socketpair stays, Deno's signal handling needs it and it reaches
// no one), no io_uring (its requests bypass seccomp), no ptrace.
const DENIED = [
  Syscall.execve,
  Syscall.execveat,
  Syscall.socket,
  Syscall.ptrace,
  Syscall.process_vm_readv,
  Syscall.process_vm_writev,
  Syscall.io_uring_setup,
];

/**
 * Confines this process for good (every thread): no filesystem access but reading
 * /proc/self/fdinfo (SET_IRQFD checks an eventfd there) and the
 * `allowPaths`, no TCP bind or connect, no new sockets, no exec, no
 * signals or abstract sockets outside the process, no_new_privs.
 * Throws SandboxError where Landlock is missing or older than ABI 6, and
 * where a thread or process other than the `exempt` ones runs already.
 * The parked threads' calls never settle: the program must end with
 * Deno.exit(), as main.ts does.
 */
export async function applySandbox(
  options: SandboxOptions,
  exempt: SandboxExemptions,
): Promise<void> {
  // Deno's pool grows on demand: its new threads are parked below, and one
  // that only takes the pool's name is not, which fails the sandbox.
  const stray = namedThreads().find((t) =>
    t.name !== POOL_THREAD && !exempt.before.includes(t.tid) &&
    !exempt.tids.includes(t.tid)
  );
  if (stray !== undefined) {
    throw new SandboxError(
      `a thread started by device code before the sandbox (${stray.name}, a Worker?) would stay unconfined: start workers once the remote serves`,
    );
  }
  const child = childProcesses().find((pid) => !exempt.pids.includes(pid));
  if (child !== undefined) {
    throw new SandboxError(
      `a process started before the sandbox (pid ${child}) would stay unconfined: start processes once the remote serves (the sandbox then refuses them)`,
    );
  }
  let abi: number;
  try {
    abi = landlockAbi();
  } catch (e) {
    if (e instanceof SysError) {
      throw new SandboxError(
        `Landlock is not available on this kernel (landlock_create_ruleset: ${e.code})`,
      );
    }
    throw e;
  }
  if (abi < MIN_LANDLOCK_ABI) {
    throw new SandboxError(
      `Landlock ABI ${abi} is too old (signal scoping needs ABI ${MIN_LANDLOCK_ABI})`,
    );
  }
  const fs = fsRightsOfAbi(abi);
  using ruleset = new Ruleset({
    fs,
    net: AccessNet.BIND_TCP | AccessNet.CONNECT_TCP,
    scoped: Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL,
  });
  ruleset.allowPath("/proc/self/fdinfo", AccessFs.READ_FILE);
  for (const path of options.allowPaths) {
    let dir: boolean;
    try {
      dir = Deno.statSync(path).isDirectory;
    } catch (e) {
      throw new SandboxError(`--allow-path ${path}: ${(e as Error).message}`);
    }
    ruleset.allowPath(path, (dir ? RW_DIR : RW_FILE) & fs);
  }
  const pool = watchThreads(POOL_THREAD);
  try {
    ruleset.restrictSelf();
    denySyscalls(DENIED);
    if (!await parkThreads(pool, pool.length * 4 + 8)) {
      throw new SandboxError(
        `could not confine Deno's ${pool.length} ${POOL_THREAD} threads`,
      );
    }
    // Should Deno ever name or run its pool differently, say so rather than
    // leave an unconfined thread serving async ops.
    if (await poolCanOpen("/")) {
      throw new SandboxError(
        "a thread of Deno's blocking pool is not confined",
      );
    }
  } finally {
    unwatch(pool);
  }
}
