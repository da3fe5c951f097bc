// Runs one guest: an `iohub remote` serving the devices and QEMU with one
// x-pci-proxy-dev per device, each pair wired by its own socketpair. QEMU
// starts only once the remote said it is ready (devices loaded and
// validated): a device that cannot be served is the remote's one line and
// exit 2, not a QEMU failing every config read. Watches both processes,
// stops the other when one ends, and turns how the run ended into one exit
// status and one line saying why (lib/qemu/outcome.ts).

import {
  closeFd,
  pipe,
  setCloexec,
  setNonblocking,
  socketpair,
} from "../../ffi/mod.ts";
import { kvmUnavailableReason } from "../kvm/mod.ts";
import {
  type CommandLineOptions,
  type LaunchDevice,
  parentDeathPrefix,
  qemuCommandLine,
  remoteArguments,
  reservedQemuOption,
} from "./command_line.ts";
import {
  classifyQemu,
  describeStatus,
  EXIT,
  isQemuError,
  lastRemoteLine,
  type LaunchOutcome,
  outcome,
  SIGNAL_STATUS,
} from "./outcome.ts";
import { defaultQemu, probeQemu, QemuUnusableError } from "./probe.ts";
import { CHILD_ENV } from "./self_command.ts";
import { defaultRemoteCommand } from "./spawn_remote.ts";
import {
  awaitReady,
  beforeReady,
  pumpRemote,
  type ReadyWait,
  type RemoteOut,
} from "./await_ready.ts";
import { pumpLines, signalChild, stopChild } from "./supervise.ts";
import { timer, within } from "../timer.ts";

/** Printed by the CLI under --accel tcg: the run works, INTx does not. */
export const TCG_WARNING: string =
  "QEMU's x-pci-proxy-dev delivers no interrupts under --accel tcg (it " +
  "registers the irqfd with KVM only): device interrupts will not reach the guest";

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
export interface LaunchOptions extends CommandLineOptions {
  /** Devices to serve (default: one testdev with id testdev0). */
  devices?: LaunchDevice[];
  /** Stop both and end with EXIT.TIMEOUT after this many milliseconds. */
  timeoutMs?: number;
  /**
   * Aborting stops both processes; the outcome is EXIT.SIGTERM when the
   * abort reason is "SIGTERM", otherwise EXIT.SIGINT.
   */
  signal?: AbortSignal;
  /**
   * How long stopping takes at most once the run is over (default 2000 ms):
   * both processes are gone by then, killed if they did not exit.
   */
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
  /** Called once both processes run (never when QEMU was not started). */
  onStarted?(started: LaunchStarted): void;
}

const DEFAULT_GRACE_MS = 2000;
// Of the grace period, what is left for SIGKILL to take effect and the
// output pipes to drain, so that stopping ends within it.
const KILL_MARGIN_MS = 250;
// The remote ends by itself when QEMU ends: cleanly on EOF, or with
// ECONNRESET/EPIPE when QEMU died in the middle of a request. Deno may
// report the two exits in either order, so a remote that exited (was not
// killed) gets QEMU this long to be seen ending too; QEMU never ends that
// fast because the remote did (its proxy logs the failed request and goes
// on), so an end inside the window means QEMU went first.
const SETTLE_MS = 300;

/**
 * The two command lines of a run (fds: each side's socket per device, and
 * the write end of the remote's readiness pipe).
 */
export interface LaunchCommands {
  /** QEMU's full command line, argv[0] first. */
  qemu: string[];
  /** The remote's full command line, argv[0] first. */
  remote: string[];
}

/**
 * The exact command lines launch() runs, given the socket fds each side
 * inherits: both behind parentDeathPrefix(), so neither outlives us.
 */
export function launchCommands(
  opts: LaunchOptions,
  remoteFds: number[],
  qemuFds: number[],
  readyFd: number,
): LaunchCommands {
  const devices = launchDevices(opts);
  const guard = parentDeathPrefix();
  return {
    qemu: [...guard, ...qemuCommandLine(opts, devices, qemuFds)],
    remote: [
      ...guard,
      ...(opts.remoteCommand ?? defaultRemoteCommand()),
      ...remoteArguments(opts, devices, remoteFds, readyFd),
    ],
  };
}

/** The devices of `opts`, checked; throws RangeError on a bad one. */
function launchDevices(opts: LaunchOptions): LaunchDevice[] {
  const devices = opts.devices ?? [{ type: "testdev", id: "testdev0" }];
  if (devices.length === 0) throw new RangeError("launch: no devices");
  for (const d of devices) {
    // QEMU ids start with a letter.
    if (d.type === "" || !/^[A-Za-z][\w.-]*$/.test(d.id)) {
      throw new RangeError(`launch: bad device ${d.type} id ${d.id}`);
    }
  }
  const reserved = reservedQemuOption(opts.qemuArgs ?? []);
  if (reserved !== null) throw new RangeError(`launch: ${reserved}`);
  return devices;
}

/** Why QEMU cannot run this launch (an EXIT.QEMU outcome), or null. */
async function preflight(opts: LaunchOptions): Promise<LaunchOutcome | null> {
  try {
    await probeQemu(opts.qemu ?? defaultQemu());
  } catch (e) {
    if (e instanceof QemuUnusableError) {
      return outcome(EXIT.QEMU, "qemu-unusable", e.message);
    }
    throw e;
  }
  if ((opts.accel ?? "kvm") !== "kvm") return null;
  // QEMU would only say "failed to initialize kvm"; the open error says why.
  const why = kvmUnavailableReason();
  if (why === null) return null;
  return outcome(
    EXIT.QEMU,
    "qemu-unusable",
    `-accel kvm: ${why}; --accel tcg runs without KVM, but then QEMU's proxy delivers no device interrupts`,
  );
}

/** One socketpair per device: [the remote's end, QEMU's end] each. */
function devicePairs(count: number): { remote: number[]; qemu: number[] } {
  const pairs: [number, number][] = [];
  try {
    for (let i = 0; i < count; i++) pairs.push(socketpair());
  } catch (e) {
    pairs.flat().forEach(closeFd);
    throw e;
  }
  return { remote: pairs.map((p) => p[0]), qemu: pairs.map((p) => p[1]) };
}

/**
 * Spawns `command` inheriting `fds`, which are closed here either way.
 * Each child must inherit only its own ends: close-on-exec is cleared just
 * before its spawn and the fds are closed right after, so the other child
 * never holds them (else neither would see EOF when its peer dies). Each
 * child gets its own session so a Ctrl-C at the terminal reaches only us,
 * and we stop them in order.
 */
function spawnWith(
  command: string[],
  fds: number[],
  stdout: "piped" | "null",
): Deno.ChildProcess {
  try {
    fds.forEach((fd) => setCloexec(fd, false));
    return new Deno.Command(command[0], {
      args: command.slice(1),
      stdin: "null",
      stdout,
      stderr: "piped",
      env: CHILD_ENV,
      detached: true,
    }).spawn();
  } finally {
    fds.forEach(closeFd);
  }
}

/** Which end of the run came first. */
type First = "qemu" | "remote" | "timeout" | "abort";

/** The running pair, their output so far, and how to wait for it. */
interface Run {
  qemu: Deno.ChildProcess;
  remote: Deno.ChildProcess;
  remoteLines: string[];
  qemuErrors: string[];
  /** The remote's stderr pump (ends when the remote's stderr closes). */
  remoteOut: Promise<void>;
  /** All three pumps. */
  pumps: Promise<void>[];
}

/** Starts reading QEMU's stderr and its serial console. */
function pump(
  qemu: Deno.ChildProcess,
  remote: Deno.ChildProcess,
  remoteOut: RemoteOut,
  opts: LaunchOptions,
): Run {
  const qemuErrors: string[] = [];
  const qemuErr = pumpLines(qemu.stderr, (line) => {
    if (isQemuError(line)) qemuErrors.push(line);
    opts.onQemuLine?.(line);
  });
  const serial = pumpLines(
    qemu.stdout,
    (line) => opts.onSerialLine?.(line),
    opts.onSerial,
  );
  const pumps = [remoteOut.done, qemuErr, serial];
  // Their errors are awaited later; until then they must not count as
  // unhandled rejections, which would end the whole process.
  for (const p of pumps) p.catch(() => {});
  return {
    qemu,
    remote,
    remoteLines: remoteOut.lines,
    qemuErrors,
    remoteOut: remoteOut.done,
    pumps,
  };
}

/** Waits for the first end: either process, the deadline or an abort. */
async function firstEnd(
  run: Run,
  deadline: Promise<void> | null,
  aborted: Promise<void>,
): Promise<First> {
  const racers: Promise<First>[] = [
    run.qemu.status.then(() => "qemu"),
    run.remote.status.then(() => "remote"),
    aborted.then(() => "abort"),
  ];
  if (deadline !== null) racers.push(deadline.then(() => "timeout"));
  const first = await Promise.race(racers);
  if (
    first === "remote" && (await run.remote.status).signal === null &&
    await within(run.qemu.status, SETTLE_MS)
  ) {
    return "qemu";
  }
  return first;
}

/** QEMU ended first: classify its end, then let the remote follow. */
async function afterQemu(run: Run, stopBy: number): Promise<LaunchOutcome> {
  const qs = await run.qemu.status;
  await run.pumps[1];
  const c = classifyQemu(qs, run.qemuErrors);
  // The remote exits by itself once QEMU's end of every socket closed.
  const r = await stopChild(run.remote, stopBy, false);
  await run.remoteOut;
  let { status, end, message } = c;
  const remoteFailed = r.signalled || !r.status.success;
  if (remoteFailed && status === EXIT.OK) {
    status = EXIT.REMOTE;
    end = "remote-failed";
  }
  if (r.signalled) {
    message += "; the remote did not exit after QEMU closed its sockets, " +
      "stopped it";
  } else if (!r.status.success) {
    const why = lastRemoteLine(run.remoteLines);
    message += `; remote ${describeStatus(r.status)}${
      why === undefined ? "" : ` (${why})`
    }`;
  }
  return outcome(status, end, message, {
    guestCode: c.guest,
    qemu: qs,
    remote: r.status,
  });
}

/** The remote ended first (and QEMU did not follow at once): stop QEMU. */
async function afterRemote(run: Run, stopBy: number): Promise<LaunchOutcome> {
  const rs = await run.remote.status;
  await run.remoteOut;
  const q = await stopChild(run.qemu, stopBy, true);
  const why = lastRemoteLine(run.remoteLines);
  return outcome(
    EXIT.REMOTE,
    "remote-failed",
    `remote ${describeStatus(rs)}${
      why === undefined ? "" : ` (${why})`
    } while QEMU ran; stopped QEMU`,
    { qemu: q.status, remote: rs },
  );
}

/**
 * Timeout or abort: stop QEMU first, in the first half of the time, so the
 * remote sees EOF on every channel and prints its close lines (with INTx
 * counters) by itself; a remote that does not is stopped by `stopBy`.
 */
async function afterStop(
  run: Run,
  stopBy: number,
  status: number,
  why: string,
): Promise<LaunchOutcome> {
  const now = performance.now();
  const q = await stopChild(run.qemu, now + (stopBy - now) / 2, true);
  const r = await stopChild(run.remote, stopBy, false);
  await run.remoteOut;
  return outcome(
    status,
    status === EXIT.TIMEOUT ? "timeout" : "aborted",
    `${why}; stopped QEMU and the remote`,
    { qemu: q.status, remote: r.status },
  );
}

/**
 * Runs QEMU and the remote until the guest ends the run, either side dies,
 * the timeout elapses or `opts.signal` aborts; always leaves both processes
 * reaped and every fd it opened closed. QEMU starts only once the remote
 * is ready: a remote refusing a device is an EXIT.USAGE outcome with its
 * line. QEMU that cannot be used is an outcome (EXIT.QEMU), not an
 * exception; bad devices, or QEMU options in `qemuArgs` that launch sets
 * itself, throw RangeError.
 *
 * @example
 * ```ts
 * const out = await launch({ guest: "build/guest.img", timeoutMs: 30_000,
 *   onSerialLine: (l) => console.log(l) });
 * if (out.status !== EXIT.OK) console.error(out.message);
 * ```
 */
export async function launch(opts: LaunchOptions = {}): Promise<LaunchOutcome> {
  const devices = launchDevices(opts);
  const graceMs = opts.graceMs ?? DEFAULT_GRACE_MS;
  const unusable = await preflight(opts);
  const abortStatus = (): number =>
    opts.signal?.reason === "SIGTERM"
      ? SIGNAL_STATUS.SIGTERM
      : SIGNAL_STATUS.SIGINT;
  // A terminal's Ctrl-C reaches QEMU's probe too, which then fails of it:
  // the signal is what ended the run.
  if (opts.signal?.aborted) {
    return outcome(abortStatus(), "aborted", "interrupted before start");
  }
  if (unusable !== null) return unusable;

  const fds = devicePairs(devices.length);
  let ready: [number, number];
  try {
    ready = pipe();
    setNonblocking(ready[0], true);
  } catch (e) {
    [...fds.remote, ...fds.qemu].forEach(closeFd);
    throw e;
  }
  const commands = launchCommands(opts, fds.remote, fds.qemu, ready[1]);
  let remote: Deno.ChildProcess;
  try {
    remote = spawnWith(commands.remote, [...fds.remote, ready[1]], "null");
  } catch (e) {
    fds.qemu.forEach(closeFd);
    closeFd(ready[0]);
    throw e;
  }
  const remoteOut = pumpRemote(remote, opts.onRemoteLine);
  // The timeout covers loading the devices too: a module that never
  // finishes importing must not hang the launch.
  const deadline = opts.timeoutMs === undefined ? null : timer(opts.timeoutMs);
  let onAbort = (): void => {};
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
  });
  opts.signal?.addEventListener("abort", onAbort, { once: true });
  let qemu: Deno.ChildProcess | null = null;
  let run: Run | null = null;
  let wait: ReadyWait | null = null;
  try {
    wait = await awaitReady(remote, ready[0], deadline?.done ?? null, aborted);
    const readiness = wait.readiness;
    if (readiness !== "ready") {
      fds.qemu.forEach(closeFd);
      const why = readiness === "timeout"
        ? `timed out after ${opts.timeoutMs! / 1000} s`
        : readiness === "abort"
        ? `interrupted by ${
          abortStatus() === EXIT.SIGTERM ? "SIGTERM" : "SIGINT"
        }`
        : null;
      return await beforeReady(
        remote,
        remoteOut,
        wait,
        why === null ? null : {
          status: readiness === "timeout" ? EXIT.TIMEOUT : abortStatus(),
          why,
        },
        performance.now() + graceMs - KILL_MARGIN_MS,
      );
    }
    try {
      qemu = spawnWith(commands.qemu, fds.qemu, "piped");
    } catch (e) {
      const r = await stopChild(remote, performance.now() + graceMs, true);
      await remoteOut.done.catch(() => {});
      remoteOut.release(false);
      return outcome(
        EXIT.QEMU,
        "qemu-failed",
        `${opts.qemu ?? defaultQemu()} could not be started: ${
          (e as Error).message
        }`,
        { remote: r.status },
      );
    }
    run = pump(qemu, remote, remoteOut, opts);
    remoteOut.release(false);
    opts.onStarted?.({
      qemuPid: qemu.pid,
      remotePid: remote.pid,
      qemuCommand: commands.qemu,
      remoteCommand: commands.remote,
    });
    const first = await firstEnd(run, deadline?.done ?? null, aborted);
    const stopBy = performance.now() + graceMs - KILL_MARGIN_MS;
    let result: LaunchOutcome;
    if (first === "qemu") {
      result = await afterQemu(run, stopBy);
    } else if (first === "remote") {
      result = await afterRemote(run, stopBy);
    } else if (first === "timeout") {
      result = await afterStop(
        run,
        stopBy,
        EXIT.TIMEOUT,
        `timed out after ${opts.timeoutMs! / 1000} s`,
      );
    } else {
      const status = abortStatus();
      result = await afterStop(
        run,
        stopBy,
        status,
        `interrupted by ${status === EXIT.SIGTERM ? "SIGTERM" : "SIGINT"}`,
      );
    }
    await Promise.all(run.pumps);
    result.remoteLines = run.remoteLines;
    return result;
  } catch (e) {
    // Only a throwing callback or a broken invariant gets here: leave no
    // process behind either way.
    if (qemu !== null) signalChild(qemu, "SIGKILL");
    signalChild(remote, "SIGKILL");
    await Promise.allSettled([
      qemu?.status,
      remote.status,
      remoteOut.done,
      ...(run?.pumps ?? []),
    ]);
    // awaitReady owns the read end from its start; before that, it is ours.
    if (wait === null) closeFd(ready[0]);
    else await wait.closed;
    throw e;
  } finally {
    deadline?.cancel();
    opts.signal?.removeEventListener("abort", onAbort);
  }
}
