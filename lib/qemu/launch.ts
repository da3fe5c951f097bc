// Runs one guest: an `iohub remote` serving the devices and QEMU with one
// x-pci-proxy-dev per device, each pair wired by its own socketpair. Watches
// both processes, stops the other when one ends, and turns how the run ended
// into one exit status and one line saying why.

import { closeFd, setCloexec, socketpair } from "../../ffi/mod.ts";
import { kvmUnavailableReason } from "../kvm/kvm.ts";
import { type Verbosity, verbosityFlags } from "../log.ts";
import { DEFAULT_QEMU, probeQemu, QemuUnusableError } from "./probe.ts";
import { selfCommand } from "./self_command.ts";
import { type SocketChild, spawnWithSockets } from "./socket_child.ts";

/** Exit status: the guest passed (debug-exit 0) or QEMU exited 0 normally. */
export const EXIT_OK = 0;
/** Exit status: bad command line. */
export const EXIT_USAGE = 2;
/** Exit status: QEMU missing, unusable, failed or killed. */
export const EXIT_QEMU = 3;
/** Exit status: the remote failed (exited non-zero, or died while QEMU ran). */
export const EXIT_REMOTE = 4;
/** Exit status: the guest reported failure (debug-exit with v != 0). */
export const EXIT_GUEST = 5;
/** Exit status: --timeout elapsed. */
export const EXIT_TIMEOUT = 6;
/** Exit status: stopped by SIGINT (128 + 2). */
export const EXIT_SIGINT = 130;
/** Exit status: stopped by SIGTERM (128 + 15). */
export const EXIT_SIGTERM = 143;

/** The I/O port of the isa-debug-exit device the guest ends the run with. */
export const DEBUG_EXIT_PORT = 0xf4;

/** Printed by the CLI under --accel tcg: the run works, INTx does not. */
export const TCG_WARNING =
  "QEMU's x-pci-proxy-dev delivers no interrupts under --accel tcg (it " +
  "registers the irqfd with KVM only): device interrupts will not reach the guest";

/** One device to serve: a type `iohub remote --device` knows, and its id. */
export interface LaunchDevice {
  /** Device type, e.g. "testdev". */
  type: string;
  /**
   * Its id: QEMU's proxy device id and the name in the remote's logs; a
   * letter, then letters, digits, '-', '.' or '_'.
   */
  id: string;
}

/** The processes launch() started, reported once both are running. */
export interface LaunchStarted {
  /** QEMU's pid. */
  qemuPid: number;
  /** The remote's pid. */
  remotePid: number;
  /** QEMU's full command line (after the parentDeathPrefix(), if any). */
  qemuCommand: string[];
  /** The remote's full command line (likewise). */
  remoteCommand: string[];
}

/** What to run and whom to tell what happens. */
export interface LaunchOptions {
  /** Devices to serve (default: one testdev with id testdev0). */
  devices?: LaunchDevice[];
  /** QEMU binary (default: qemu-system-x86_64 from PATH). */
  qemu?: string;
  /** QEMU accelerator (default kvm). */
  accel?: "kvm" | "tcg";
  /** A raw floppy image to boot; without one SeaBIOS finds nothing and idles. */
  guest?: string;
  /** Guest RAM size in QEMU's syntax, e.g. "64M" (default "64M"). */
  memory?: string;
  /** Stop both and end with EXIT_TIMEOUT after this many milliseconds. */
  timeoutMs?: number;
  /** Passed to the remote as --poll-us. */
  pollMicros?: number;
  /** Passed to the remote as --quiet or --verbose (default normal). */
  verbosity?: Verbosity;
  /** Appended to QEMU's command line. */
  qemuArgs?: string[];
  /**
   * Aborting stops both processes; the outcome is EXIT_SIGTERM when the
   * abort reason is "SIGTERM", otherwise EXIT_SIGINT.
   */
  signal?: AbortSignal;
  /** How long a process gets to exit after being asked (default 2000 ms). */
  graceMs?: number;
  /**
   * The command that starts `iohub remote` (default: selfCommand()); the
   * remote's arguments are appended.
   */
  remoteCommand?: string[];
  /** Raw bytes of the guest's serial console, as they arrive. */
  onSerial?(chunk: Uint8Array): void;
  /** The guest's serial console, one line at a time (without CR/LF). */
  onSerialLine?(line: string): void;
  /** Each line the remote writes to stderr (close lines carry INTx counters). */
  onRemoteLine?(line: string): void;
  /** Each line QEMU writes to stderr. */
  onQemuLine?(line: string): void;
  /** Called once both processes run. */
  onStarted?(started: LaunchStarted): void;
}

/** How a run ended. */
export type LaunchEnd =
  | "guest-passed"
  | "qemu-exited"
  | "guest-failed"
  | "qemu-failed"
  | "qemu-unusable"
  | "remote-failed"
  | "timeout"
  | "aborted";

/** The result of launch(). */
export interface LaunchOutcome {
  /** The process exit status for this outcome (EXIT_*). */
  status: number;
  /** How the run ended. */
  end: LaunchEnd;
  /** One line saying which side stopped and why. */
  message: string;
  /** The value the guest wrote to the debug-exit port, when it did. */
  guestCode: number | null;
  /** QEMU's exit status (null if it never ran). */
  qemu: Deno.CommandStatus | null;
  /** The remote's exit status (null if it never ran). */
  remote: Deno.CommandStatus | null;
  /** Everything the remote wrote to stderr, line by line. */
  remoteLines: string[];
}

const DEFAULT_GRACE_MS = 2000;
// When the remote exits first, QEMU may be exiting too (the remote exits on
// the EOF QEMU's exit causes): give QEMU this long before blaming the remote.
const SETTLE_MS = 300;
// QEMU's prefix for its own messages; lines with it that are not warnings
// mean QEMU failed, which is how an exit status of 1 (also debug-exit 0) is
// told apart.
/** Matches a line QEMU writes to stderr as a warning, not an error. */
export const QEMU_WARNING = /^[^:]*: warning: /;
const QEMU_SIGNALLED = /terminating on signal (\d+)/;

/** The default command for `iohub remote`: this program, run as itself. */
export function defaultRemoteCommand(): string[] {
  return selfCommand(["remote"]);
}

/**
 * Starts `iohub remote` (the default command, with `extra` options) serving
 * one iohub-testdev per id, each on its own socketpair; our ends are the
 * child's `fds`, in `ids` order.
 */
export function spawnTestdevRemote(
  ids: string[],
  extra: string[] = [],
): SocketChild {
  const [program, ...command] = defaultRemoteCommand();
  return spawnWithSockets(program, ids.length, (fds) => [
    ...command,
    ...extra,
    ...ids.flatMap((id, i) => ["--device", `testdev,fd=${fds[i]},id=${id}`]),
  ]);
}

/**
 * A prefix that makes a command receive SIGTERM when its parent (this
 * process) dies, by util-linux's setpriv (which execs in place, keeping the
 * pid), so a launcher killed with SIGKILL leaves no QEMU or remote behind.
 * Empty when setpriv is not installed: the run works, without that guard.
 */
export function parentDeathPrefix(): string[] {
  let dirs: string[];
  try {
    dirs = (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":");
  } catch {
    dirs = ["/usr/bin", "/bin"];
  }
  for (const dir of dirs) {
    try {
      if (Deno.statSync(`${dir}/setpriv`).isFile) {
        return [`${dir}/setpriv`, "--pdeathsig", "TERM", "--"];
      }
    } catch {
      // Not in this directory (or not readable): keep looking.
    }
  }
  return [];
}

/** QEMU's command line for a run (fds: QEMU's socket end per device). */
export function qemuCommandLine(
  opts: LaunchOptions,
  devices: LaunchDevice[],
  fds: number[],
): string[] {
  const accel = opts.accel ?? "kvm";
  const memory = opts.memory ?? "64M";
  const args = [
    opts.qemu ?? DEFAULT_QEMU,
    "-accel",
    accel,
    "-m",
    memory,
    // The proxy sends guest RAM to the remote with SYNC_SYSMEM, which needs
    // RAM to be a shareable fd.
    "-object",
    `memory-backend-memfd,id=mem,size=${memory}`,
    "-numa",
    "node,memdev=mem",
    "-display",
    "none",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    // No default NIC: SeaBIOS would spend seconds trying to PXE boot it.
    "-net",
    "none",
    "-device",
    `isa-debug-exit,iobase=0x${DEBUG_EXIT_PORT.toString(16)},iosize=0x04`,
  ];
  if (accel === "kvm") {
    // With the default tick policy SeaBIOS sometimes spins forever under
    // this machine's KVM (see ENVIRONMENT.md).
    args.push("-global", "kvm-pit.lost_tick_policy=discard");
  }
  devices.forEach((d, i) =>
    args.push("-device", `x-pci-proxy-dev,id=${d.id},fd=${fds[i]}`)
  );
  if (opts.guest !== undefined) {
    // Read-only, so several runs can boot one image (QEMU locks writable
    // images); QEMU's option syntax escapes a comma by doubling it.
    args.push(
      "-drive",
      `format=raw,file=${
        opts.guest.replaceAll(",", ",,")
      },if=floppy,readonly=on`,
    );
  }
  args.push(...(opts.qemuArgs ?? []));
  return args;
}

/** The remote's arguments after the command (fds: its socket end per device). */
export function remoteArguments(
  opts: LaunchOptions,
  devices: LaunchDevice[],
  fds: number[],
): string[] {
  const args: string[] = [];
  devices.forEach((d, i) =>
    args.push("--device", `${d.type},fd=${fds[i]},id=${d.id}`)
  );
  if (opts.pollMicros !== undefined) {
    args.push("--poll-us", String(opts.pollMicros));
  }
  args.push(...verbosityFlags(opts.verbosity ?? "normal"));
  return args;
}

/** A timer that can be cancelled so no test sees it leak. */
function timer(ms: number): { done: Promise<void>; cancel(): void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const done = new Promise<void>((resolve) => {
    id = setTimeout(resolve, ms);
  });
  return { done, cancel: () => clearTimeout(id) };
}

/** Waits for `p` at most `ms`; true when it settled in time. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  const t = timer(ms);
  try {
    return await Promise.race([p.then(() => true), t.done.then(() => false)]);
  } finally {
    t.cancel();
  }
}

/** Sends `signo`, ignoring a child that already exited. */
function signal(child: Deno.ChildProcess, signo: Deno.Signal): void {
  try {
    child.kill(signo);
  } catch {
    // Already exited and reaped: nothing to signal.
  }
}

/**
 * Waits up to `graceMs` for `child` to exit by itself, then SIGTERM, then
 * after another grace period SIGKILL; returns its status and whether it had
 * to be signalled.
 */
async function reap(
  child: Deno.ChildProcess,
  graceMs: number,
  askFirst: boolean,
): Promise<{ status: Deno.CommandStatus; signalled: boolean }> {
  let signalled = false;
  if (askFirst) {
    signal(child, "SIGTERM");
    signalled = true;
  } else if (!await within(child.status, graceMs)) {
    signal(child, "SIGTERM");
    signalled = true;
  }
  if (!await within(child.status, graceMs)) {
    signal(child, "SIGKILL");
    signalled = true;
  }
  return { status: await child.status, signalled };
}

/**
 * Feeds each line of `stream` to `onLine` until end of stream. A callback
 * that throws does not stop the draining (a child blocked on a full pipe
 * would hang the run); the first such error rejects the returned promise
 * once the stream has ended.
 */
async function pumpLines(
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

function describeStatus(s: Deno.CommandStatus): string {
  return s.signal !== null
    ? `was killed by ${s.signal}`
    : `exited with status ${s.code}`;
}

/** Classifies QEMU ending on its own, from its status and stderr lines. */
function classifyQemu(
  s: Deno.CommandStatus,
  errors: string[],
): { status: number; end: LaunchEnd; message: string; guest: number | null } {
  if (s.signal !== null) {
    return {
      status: EXIT_QEMU,
      end: "qemu-failed",
      message: `QEMU ${describeStatus(s)}`,
      guest: null,
    };
  }
  const signalled = errors.find((l) => QEMU_SIGNALLED.test(l));
  if (signalled !== undefined) {
    // QEMU exits 0 on SIGTERM/SIGINT/SIGHUP; we did not send it.
    return {
      status: EXIT_QEMU,
      end: "qemu-failed",
      message: `QEMU stopped: ${signalled}`,
      guest: null,
    };
  }
  if (s.code === 0) {
    return {
      status: EXIT_OK,
      end: "qemu-exited",
      message: "QEMU exited normally",
      guest: null,
    };
  }
  const lastError = errors.at(-1);
  // isa-debug-exit exits with (v << 1) | 1; QEMU's own errors exit 1 too,
  // but print a message first.
  if (s.code === 1 && lastError === undefined) {
    return {
      status: EXIT_OK,
      end: "guest-passed",
      message: "guest passed (debug-exit 0)",
      guest: 0,
    };
  }
  if (s.code % 2 === 1 && s.code > 1) {
    const v = s.code >> 1;
    return {
      status: EXIT_GUEST,
      end: "guest-failed",
      message: `guest reported failure code ${v}`,
      guest: v,
    };
  }
  return {
    status: EXIT_QEMU,
    end: "qemu-failed",
    message: `QEMU exited with status ${s.code}${
      lastError === undefined ? "" : ` (${lastError})`
    }`,
    guest: null,
  };
}

/** The remote's last line without its "iohub remote: " prefix. */
function lastRemoteLine(lines: string[]): string | undefined {
  return lines.at(-1)?.replace(/^iohub remote: /, "");
}

function outcome(
  status: number,
  end: LaunchEnd,
  message: string,
  extra: Partial<LaunchOutcome> = {},
): LaunchOutcome {
  return {
    status,
    end,
    message,
    guestCode: null,
    qemu: null,
    remote: null,
    remoteLines: [],
    ...extra,
  };
}

/**
 * Runs QEMU and the remote until the guest ends the run, either side dies,
 * the timeout elapses or `opts.signal` aborts; always leaves both processes
 * reaped and every fd it opened closed. QEMU that cannot be used is an
 * outcome (EXIT_QEMU), not an exception.
 *
 * @example
 * ```ts
 * const out = await launch({ guest: "build/guest.img", timeoutMs: 30_000,
 *   onSerialLine: (l) => console.log(l) });
 * if (out.status !== EXIT_OK) console.error(out.message);
 * ```
 */
export async function launch(opts: LaunchOptions = {}): Promise<LaunchOutcome> {
  const devices = opts.devices ?? [{ type: "testdev", id: "testdev0" }];
  if (devices.length === 0) throw new RangeError("launch: no devices");
  for (const d of devices) {
    // Both command lines split options on commas; QEMU ids start with a letter.
    if (!/^[A-Za-z][\w.-]*$/.test(d.id) || !/^[^,=]+$/.test(d.type)) {
      throw new RangeError(`launch: bad device ${d.type} id ${d.id}`);
    }
  }
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  try {
    await probeQemu(opts.qemu ?? DEFAULT_QEMU);
  } catch (e) {
    if (e instanceof QemuUnusableError) {
      return outcome(EXIT_QEMU, "qemu-unusable", e.message);
    }
    throw e;
  }
  if ((opts.accel ?? "kvm") === "kvm") {
    // QEMU would only say "failed to initialize kvm"; the open error says why.
    const why = kvmUnavailableReason();
    if (why !== null) {
      return outcome(
        EXIT_QEMU,
        "qemu-unusable",
        `-accel kvm: ${why}; --accel tcg runs without KVM, but then QEMU's proxy delivers no device interrupts`,
      );
    }
  }
  const abortStatus = (): number =>
    opts.signal?.reason === "SIGTERM" ? EXIT_SIGTERM : EXIT_SIGINT;
  if (opts.signal?.aborted) {
    return outcome(abortStatus(), "aborted", "interrupted before start");
  }

  const pairs: [number, number][] = [];
  try {
    for (const _ of devices) pairs.push(socketpair());
  } catch (e) {
    pairs.flat().forEach(closeFd);
    throw e;
  }
  const remoteFds = pairs.map((p) => p[0]);
  const qemuFds = pairs.map((p) => p[1]);
  const guard = parentDeathPrefix();
  const remoteCommand = [
    ...guard,
    ...(opts.remoteCommand ?? defaultRemoteCommand()),
    ...remoteArguments(opts, devices, remoteFds),
  ];
  const qemuCommand = [...guard, ...qemuCommandLine(opts, devices, qemuFds)];

  // Each child must inherit only its own ends: close-on-exec is cleared on
  // one side's fds just before its spawn, and those fds are closed right
  // after, so the other child never holds them (else neither would see EOF
  // when its peer dies). Both children get their own session so a Ctrl-C
  // at the terminal reaches only us, and we stop them in order.
  let remote: Deno.ChildProcess;
  try {
    remoteFds.forEach((fd) => setCloexec(fd, false));
    remote = new Deno.Command(remoteCommand[0], {
      args: remoteCommand.slice(1),
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (e) {
    qemuFds.forEach(closeFd);
    throw e;
  } finally {
    remoteFds.forEach(closeFd);
  }
  let qemu: Deno.ChildProcess;
  try {
    qemuFds.forEach((fd) => setCloexec(fd, false));
    qemu = new Deno.Command(qemuCommand[0], {
      args: qemuCommand.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      detached: true,
    }).spawn();
  } catch (e) {
    const r = await reap(remote, graceMs, true);
    await remote.stderr.cancel().catch(() => {});
    return outcome(
      EXIT_QEMU,
      "qemu-failed",
      `${opts.qemu ?? DEFAULT_QEMU} could not be started: ${
        (e as Error).message
      }`,
      { remote: r.status },
    );
  } finally {
    qemuFds.forEach(closeFd);
  }

  const remoteLines: string[] = [];
  const qemuErrors: string[] = [];
  const remoteOut = pumpLines(remote.stderr, (line) => {
    remoteLines.push(line);
    opts.onRemoteLine?.(line);
  });
  const qemuErr = pumpLines(qemu.stderr, (line) => {
    if (line.trim() !== "" && !QEMU_WARNING.test(line)) qemuErrors.push(line);
    opts.onQemuLine?.(line);
  });
  const serial = pumpLines(
    qemu.stdout,
    (line) => opts.onSerialLine?.(line),
    opts.onSerial,
  );
  // Their errors are awaited below; until then they must not count as
  // unhandled rejections, which would end the whole process.
  for (const p of [remoteOut, qemuErr, serial]) p.catch(() => {});
  type First = "qemu" | "remote" | "timeout" | "abort";
  const deadline = opts.timeoutMs === undefined ? null : timer(opts.timeoutMs);
  let onAbort = (): void => {};
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
  });
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    opts.onStarted?.({
      qemuPid: qemu.pid,
      remotePid: remote.pid,
      qemuCommand,
      remoteCommand,
    });

    const racers: Promise<First>[] = [
      qemu.status.then(() => "qemu"),
      remote.status.then(() => "remote"),
      aborted.then(() => "abort"),
    ];
    if (deadline !== null) racers.push(deadline.done.then(() => "timeout"));
    let first = await Promise.race(racers);
    // A remote that exited cleanly may just have seen the EOF of QEMU's own
    // exit before we saw QEMU go; one that failed is to blame either way.
    if (
      first === "remote" && (await remote.status).success &&
      await within(qemu.status, SETTLE_MS)
    ) {
      first = "qemu";
    }

    let result: LaunchOutcome;
    if (first === "qemu") {
      const qs = await qemu.status;
      await qemuErr;
      const c = classifyQemu(qs, qemuErrors);
      // The remote exits by itself once QEMU's end of every socket closed.
      const r = await reap(remote, graceMs, false);
      await remoteOut;
      let { status, end, message } = c;
      if (r.signalled) {
        if (status === EXIT_OK) {
          status = EXIT_REMOTE;
          end = "remote-failed";
        }
        message += "; the remote did not exit after QEMU closed its sockets, " +
          `stopped it`;
      } else if (!r.status.success) {
        const why = lastRemoteLine(remoteLines);
        if (status === EXIT_OK) {
          status = EXIT_REMOTE;
          end = "remote-failed";
        }
        message += `; remote ${describeStatus(r.status)}${
          why === undefined ? "" : ` (${why})`
        }`;
      }
      result = outcome(status, end, message, {
        guestCode: c.guest,
        qemu: qs,
        remote: r.status,
      });
    } else if (first === "remote") {
      const rs = await remote.status;
      await remoteOut;
      const q = await reap(qemu, graceMs, true);
      const why = lastRemoteLine(remoteLines);
      result = outcome(
        EXIT_REMOTE,
        "remote-failed",
        `remote ${describeStatus(rs)}${
          why === undefined ? "" : ` (${why})`
        } while QEMU ran; stopped QEMU`,
        { qemu: q.status, remote: rs },
      );
    } else {
      // Timeout or abort: stop QEMU first so the remote sees EOF on every
      // channel and prints its close lines (with INTx counters) by itself.
      const q = await reap(qemu, graceMs, true);
      const r = await reap(remote, graceMs, false);
      await remoteOut;
      const why = first === "timeout"
        ? `timed out after ${opts.timeoutMs! / 1000} s`
        : `interrupted by ${
          abortStatus() === EXIT_SIGTERM ? "SIGTERM" : "SIGINT"
        }`;
      result = outcome(
        first === "timeout" ? EXIT_TIMEOUT : abortStatus(),
        first === "timeout" ? "timeout" : "aborted",
        `${why}; stopped QEMU and the remote`,
        { qemu: q.status, remote: r.status },
      );
    }
    await Promise.all([qemuErr, serial, remoteOut]);
    result.remoteLines = remoteLines;
    return result;
  } catch (e) {
    // Only a throwing callback or a broken invariant gets here: leave no
    // process behind either way.
    signal(qemu, "SIGKILL");
    signal(remote, "SIGKILL");
    await Promise.allSettled([
      qemu.status,
      remote.status,
      qemuErr,
      serial,
      remoteOut,
    ]);
    throw e;
  } finally {
    deadline?.cancel();
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
