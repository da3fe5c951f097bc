// `iohub remote`: serves devices over mpqemu to QEMU's x-pci-proxy-dev (or
// any conforming proxy), each on an inherited socket fd or a socket path,
// built-in types or device modules loaded by path or URL.

import { parseArgs } from "@std/cli/parse-args";
import {
  Errno,
  notConnectedUnixStream,
  PeerFdCloser,
  SysError,
} from "../../ffi/mod.ts";
import {
  DeviceTypeError,
  isModuleType,
  moduleUrl,
  resolveDeviceType,
} from "../pci/devices/load.ts";
import { REMOTE_DEVICE_OPTIONS } from "../pci/devices/options.ts";
import type { DeviceFactory } from "../pci/device.ts";
import { builtinNames } from "../pci/devices/mod.ts";
import { DeviceModelError } from "../pci/validate.ts";
import { type DeviceEndpoint, MAX_DEVICES, Remote } from "../remote/remote.ts";
import { ControlSocket } from "../remote/control.ts";
import { SocketPathError } from "../remote/listen.ts";
import {
  applySandbox,
  type SandboxOptions,
  threadsBeforeDevices,
} from "../remote/sandbox.ts";
import { Tracer } from "../remote/trace.ts";
import { removeAtExit } from "../remote/socket_reaper.ts";
import { Heartbeat, Watchdog } from "../remote/watchdog.ts";
import {
  type LogSink,
  logSink,
  type Severity,
  type Verbosity,
} from "../log.ts";
import { ReadySignal } from "../remote/ready.ts";
import {
  type Command,
  describeError,
  signalStatus,
  StopOnSignals,
  unexpectedArgument,
  UsageError,
  VERBOSITY_OPTIONS,
  verbosityOf,
} from "./common.ts";
import { DeviceErrorReports, deviceFrame } from "../remote/device_errors.ts";
import { parseDeviceValue } from "./device_value.ts";
import { unlessAborted } from "../timer.ts";
import { SIGNAL_STATUS } from "../qemu/outcome.ts";

const HELP = `usage: iohub remote --device TYPE,fd=N[,id=NAME] [--device ...]
       iohub remote --device TYPE,socket=PATH[,id=NAME] [--device ...]

Serves PCI devices to QEMU's x-pci-proxy-dev (mpqemu protocol), each on its
own UNIX stream socket, from one process. Interrupts go straight to KVM
through the irqfd/resamplefd pair the proxy sends with SET_IRQFD.

options:
  --device SPEC   a device to serve (repeatable, at most ${MAX_DEVICES}). SPEC is
                  TYPE followed by:
                    fd=N        an inherited, connected socket fd (what
                                QEMU 7.2's x-pci-proxy-dev can use)
                    socket=PATH listen on PATH and serve the first peer
                                (a stale socket file is replaced)
                    id=NAME     name in logs (default: TYPE, or a module's
                                file name, + index)
                    KEY=VALUE   (device modules) the module's own options,
                                given to its factory as ctx.params
                  a comma inside a value or path is written ,, (as QEMU)
                  TYPE is a built-in (${builtinNames()}) or a device
                  module: a path (./my_dev.ts) or URL whose default export
                  is a DeviceFactory (see lib/pci/mod.ts)
  --poll-us N     after each message, busy-poll N microseconds for the next
                  one before sleeping; 0 never polls (default: adaptive,
                  up to --poll-max-us)
  --poll-max-us N bound of the adaptive polling window (default 32)
  --trace FILE    write one JSON object per line to FILE for every message
                  (t in us, dev, cmd, addr, size, value, bar and offset,
                  us = service time), INTx edge, resample, and channel
                  open/close; at most 1 GiB, written without ever holding
                  up a device
  --control PATH  answer connections on the UNIX socket PATH with the live
                  state as JSON (read it with 'iohub stats PATH')
  --quiet         print errors only
  --verbose       also print per-connection details
  --sandbox       once the devices are set up, confine the process (Landlock
                  ABI 6+, seccomp, no_new_privs): no files, no exec, no TCP,
                  no new sockets, no signals to other processes
  --allow-path P  with --sandbox: P stays readable and writable (repeatable)
  --ready-fd N    for launchers: once every device is loaded and validated,
                  its socket set up and the sandbox applied, write one byte
                  to the inherited fd N and close it; a remote that fails
                  before then closes it unwritten (iohub launch starts QEMU
                  only after that byte)
  --help          this text

Stops on SIGINT/SIGTERM after closing every channel (counters logged) and
removing its socket files.

exit status:
  0    every channel closed normally
  1    a channel closed on an error (each logged as one line on stderr)
  2    bad command line, or a device type or module that cannot be used
  130  stopped by SIGINT
  143  stopped by SIGTERM`;

/** One --device value, parsed but not yet resolved to a factory. */
export interface RemoteDeviceArg {
  /** The type as given: a built-in name or a module path/URL. */
  type: string;
  /** Name in logs. */
  id: string;
  /** A device module's own options (ctx.params). */
  params: Record<string, string>;
  /** Its connection. */
  endpoint: DeviceEndpoint;
}

/**
 * The default id of device `index` of `type`: the type, or a module's file
 * name, then the index (after a "-" when the name ends in a digit, so that
 * uart16550.ts's first is uart16550-0); one that would not start with a
 * letter gets "dev" in front, as launch hands ids to QEMU.
 */
export function defaultDeviceId(type: string, index: number): string {
  const base = isModuleType(type)
    ? type.replace(/[?#].*$/, "").replace(/\/+$/, "").split("/").pop()!
      .replace(/\.(ts|js|mjs)$/, "").replace(/[^\w.-]/g, "_")
    : type;
  const id = /\d$/.test(base) ? `${base}-${index}` : `${base}${index}`;
  // Launch gives it to QEMU too, whose ids start with a letter.
  return /^[A-Za-z]/.test(base) ? id : `dev${id}`;
}

/** Parses one --device value (index names the default id). */
export function parseDeviceSpec(value: string, index: number): RemoteDeviceArg {
  const { type, own, params } = parseDeviceValue(
    value,
    REMOTE_DEVICE_OPTIONS,
    "fd=N, socket=PATH or id=NAME",
  );
  const id = own.get("id") ?? defaultDeviceId(type, index);
  const fd = own.has("fd") ? Number(own.get("fd")) : null;
  const path = own.get("socket") ?? null;
  if ((fd === null) === (path === null)) {
    throw new UsageError(
      `--device ${value}: give exactly one of fd=N and socket=PATH`,
    );
  }
  if (fd !== null) {
    // A file or a listening socket would only fail later, in epoll or at
    // the first message, with an error that names neither.
    const why = fd < 3 ? "stdin, stdout or stderr" : notConnectedUnixStream(fd);
    if (why !== null) {
      throw new UsageError(
        `--device ${value}: fd ${fd} is not a connected UNIX stream socket: it is ${why}`,
      );
    }
    return { type, id, params, endpoint: { kind: "fd", fd } };
  }
  return { type, id, params, endpoint: { kind: "socket", path: path! } };
}

/** Parsed `iohub remote` arguments. */
export interface RemoteArgs {
  /** The devices, in order. */
  devices: RemoteDeviceArg[];
  /** A fixed polling window in microseconds, or undefined for adaptive. */
  pollMicros: number | undefined;
  /** The bound of the adaptive window in microseconds. */
  pollMaxMicros: number;
  /** --trace FILE, or null. */
  trace: string | null;
  /** --control PATH, or null. */
  control: string | null;
  /** How much to log (--quiet, --verbose). */
  verbosity: Verbosity;
  /** --sandbox and its --allow-path list, or null without --sandbox. */
  sandbox: SandboxOptions | null;
  /** --ready-fd N, or null. */
  readyFd: number | null;
}

function micros(flag: string, raw: string): number {
  if (!/^\d+$/.test(raw) || Number(raw) > 1_000_000) {
    throw new UsageError(
      `remote: ${flag} ${raw}: not a number of microseconds (0..1000000)`,
    );
  }
  return Number(raw);
}

/** Parses `iohub remote` arguments into device args and options. */
export function parseRemoteArgs(args: string[]): RemoteArgs {
  const parsed = parseArgs(args, {
    string: [
      "device",
      "poll-us",
      "poll-max-us",
      "trace",
      "control",
      "allow-path",
      "ready-fd",
    ],
    boolean: [...VERBOSITY_OPTIONS, "sandbox"],
    collect: ["device", "allow-path"],
    unknown: (arg: string) => {
      throw unexpectedArgument("remote", arg, args);
    },
  });
  const values = (parsed.device as string[] | undefined) ?? [];
  if (values.length === 0) {
    throw new UsageError("remote: at least one --device is required");
  }
  if (values.length > MAX_DEVICES) {
    throw new UsageError(
      `remote: ${values.length} devices, at most ${MAX_DEVICES} per remote`,
    );
  }
  const devices = values.map((v, i) => parseDeviceSpec(v, i));
  const ids = new Set<string>();
  const fds = new Set<number>();
  for (const d of devices) {
    if (ids.has(d.id)) {
      throw new UsageError(`remote: duplicate device id '${d.id}'`);
    }
    ids.add(d.id);
    if (d.endpoint.kind === "fd") {
      if (fds.has(d.endpoint.fd)) {
        throw new UsageError(`remote: fd ${d.endpoint.fd} given twice`);
      }
      fds.add(d.endpoint.fd);
    }
  }
  const allowPaths = (parsed["allow-path"] as string[] | undefined) ?? [];
  if (allowPaths.length > 0 && !parsed.sandbox) {
    throw new UsageError("remote: --allow-path needs --sandbox");
  }
  const poll = parsed["poll-us"] as string | undefined;
  const ready = parsed["ready-fd"] as string | undefined;
  if (ready !== undefined && !/^\d+$/.test(ready)) {
    throw new UsageError(`remote: --ready-fd ${ready}: not an fd number`);
  }
  if (ready !== undefined && fds.has(Number(ready))) {
    throw new UsageError(
      `remote: --ready-fd ${ready} is a device's fd too (fd ${ready} given twice)`,
    );
  }
  return {
    devices,
    pollMicros: poll === undefined ? undefined : micros("--poll-us", poll),
    pollMaxMicros: micros(
      "--poll-max-us",
      (parsed["poll-max-us"] as string | undefined) ?? "32",
    ),
    trace: pathOption(parsed.trace, "--trace"),
    control: pathOption(parsed.control, "--control"),
    verbosity: verbosityOf(parsed, "remote"),
    sandbox: parsed.sandbox ? { allowPaths } : null,
    readyFd: ready === undefined ? null : Number(ready),
  };
}

function pathOption(v: unknown, flag: string): string | null {
  if (v === undefined) return null;
  if (typeof v !== "string" || v === "") {
    throw new UsageError(`remote: ${flag} needs a path`);
  }
  return v;
}

/** The `iohub remote` subcommand. */
export const remoteCommand: Command = {
  summary: "serve devices to QEMU's x-pci-proxy-dev over mpqemu",
  help: HELP,
  async run(args: string[]): Promise<number> {
    // Device code's console output joins the remote's own lines on stderr:
    // the remote has no stdout of its own, and launch does not keep it.
    console.log = console.info = console.debug = console.error;
    const {
      devices,
      pollMicros,
      pollMaxMicros,
      trace,
      control,
      verbosity,
      sandbox,
      readyFd,
    } = parseRemoteArgs(args);
    using ready = readyFd === null ? null : openReady(readyFd);
    const sink = logSink("iohub remote: ", verbosity);
    // Until the remote serves, its lines wait: if setting up fails, the
    // command's one error line is all the user sees, not the cleanup too.
    const held: [string, Severity][] = [];
    let serving = false;
    const log: LogSink = (line, severity) => {
      if (serving) sink(line, severity);
      else held.push([line, severity]);
    };
    // From here until the remote and its sockets are closed, SIGINT and
    // SIGTERM stop it cleanly; a signal that comes after serving ended, while
    // they close, still sets the exit status instead of killing the process.
    using stop = new StopOnSignals();
    using _reports = new DeviceErrorReports(log, moduleOwners(devices));
    let status: number;
    {
      using tracer = trace === null ? null : openTracer(trace, log);
      const heartbeat = new Heartbeat();
      const watch = (): Promise<Watchdog> =>
        Watchdog.start({
          heartbeat,
          names: devices.map((d) => d.id),
          statuses: SIGNAL_STATUS,
          log: (line) => log(line, "error"),
        });
      // Device code runs on this thread from the modules' top level on:
      // should it never return, only the watchdog can answer a signal.
      let watchdog: Watchdog | null = await watch();
      let closer: PeerFdCloser | null = null;
      try {
        // The threads iohub runs before any device code (Deno starts one
        // for signals with the first listener, above).
        const before = sandbox === null ? [] : threadsBeforeDevices();
        const factories: DeviceFactory[] = [];
        for (const [i, d] of devices.entries()) {
          heartbeat.enter(i);
          let factory: DeviceFactory | null;
          try {
            // A module may take its time (up to 20 s) or never finish:
            // SIGINT and SIGTERM end the wait, as they end serving.
            factory = await unlessAborted(
              resolveDeviceType(d.type),
              stop.signal,
            );
          } catch (e) {
            if (e instanceof DeviceTypeError) throw new UsageError(e.message);
            throw e;
          }
          if (factory === null) {
            sink(`${stop.signal.reason}: stopped loading ${d.type}`, "info");
            return signalStatus(stop.signal)!;
          }
          factories.push(factory);
        }
        using remote = new Remote({
          log,
          pollMicros,
          pollMaxMicros,
          tracer: tracer ?? undefined,
          timeRequests: control !== null,
          heartbeat,
        });
        devices.forEach((d, i) => {
          heartbeat.enter(i);
          try {
            remote.addDevice({
              id: d.id,
              type: d.type,
              factory: factories[i],
              endpoint: d.endpoint,
              params: d.params,
            });
          } catch (e) {
            throw addDeviceError(d, e);
          }
          heartbeat.beat();
        });
        await using controlSocket = control === null
          ? null
          : openControl(control);
        const sockets = [
          ...devices.flatMap((d) =>
            d.endpoint.kind === "socket" ? [d.endpoint.path] : []
          ),
          ...(control === null ? [] : [control]),
        ];
        if (sandbox === null) {
          watchdog.removeOnExit(sockets);
        } else {
          // Confined, the remote may not remove its socket files.
          const reaper = removeAtExit(sockets);
          // Landlock binds the threads the confined thread creates, not
          // those that run already: the watchdog's thread is made anew, and
          // the old one keeps watching until then.
          await applySandbox(sandbox, {
            before,
            tids: [watchdog.tid],
            pids: reaper === null ? [] : [reaper],
          });
          const confined = await watch();
          watchdog[Symbol.dispose]();
          watchdog = confined;
        }
        // From here every fd a peer sends is closed on a thread of its own
        // (after the sandbox, so that thread is confined too).
        const fdCloser = await PeerFdCloser.start();
        closer = fdCloser;
        controlSocket?.serve(() => ({
          ...remote.state(),
          peerFdCloses: {
            pending: fdCloser.pending,
            dropped: fdCloser.dropped,
          },
        }));
        serving = true;
        for (const [line, severity] of held) sink(line, severity);
        // Everything that can fail at start has run: the launcher may start
        // QEMU now, and a failure before this left the pipe unwritten.
        ready?.signal();
        status = await serve(remote, log, stop.signal);
      } finally {
        closer?.[Symbol.dispose]();
        watchdog?.[Symbol.dispose]();
      }
    }
    // Closed now: a signal that came while the sockets closed counts too.
    return signalStatus(stop.signal) ?? status;
  },
};

/** The ids of the devices each device module (by URL) serves. */
function moduleOwners(devices: RemoteDeviceArg[]): Map<string, string[]> {
  const owners = new Map<string, string[]>();
  for (const d of devices) {
    if (!isModuleType(d.type)) continue;
    const href = moduleUrl(d.type).href;
    owners.set(href, [...(owners.get(href) ?? []), d.id]);
  }
  return owners;
}

function openReady(fd: number): ReadySignal {
  try {
    return new ReadySignal(fd);
  } catch (e) {
    throw new UsageError(`remote: --ready-fd ${fd}: ${(e as Error).message}`);
  }
}

function openTracer(path: string, log: LogSink): Tracer {
  try {
    return new Tracer(path, { log });
  } catch (e) {
    // Opened without blocking, a FIFO nobody reads yet refuses; a socket
    // (a systemd service's stdout, say) never opens as a file.
    const kind = e instanceof SysError && e.errno === Errno.ENXIO
      ? fileKind(path)
      : null;
    const hint = kind === "fifo"
      ? " (a FIFO needs its reader first)"
      : kind === "socket"
      ? " (a socket cannot be opened as a file)"
      : "";
    throw new UsageError(
      `remote: --trace ${path}: ${describeError(e)}${hint}`,
    );
  }
}

function fileKind(path: string): "fifo" | "socket" | null {
  try {
    const info = Deno.statSync(path);
    return info.isFifo ? "fifo" : info.isSocket ? "socket" : null;
  } catch {
    return null;
  }
}

function openControl(path: string): ControlSocket {
  try {
    return new ControlSocket(path);
  } catch (e) {
    throw new UsageError(`remote: --control ${path}: ${describeError(e)}`);
  }
}

// A bad model or a socket path in use is the command line's fault (exit
// 2); a factory that throws is the module's, named with its first line.
function addDeviceError(d: RemoteDeviceArg, e: unknown): Error {
  if (e instanceof DeviceModelError) {
    return new UsageError(
      `${d.type}: malformed device model: ${e.message} (device ${d.id})`,
    );
  }
  if (e instanceof SocketPathError) return new UsageError(e.message);
  if (e instanceof SysError) return e;
  const why = e instanceof Error ? e.message : String(e);
  const at = e instanceof Error ? deviceFrame(e.stack ?? "") : null;
  return new UsageError(
    `${d.type}: the device factory failed: ${why} (device ${d.id}${
      at === null ? "" : `, at ${at}`
    })`,
  );
}

/**
 * Runs the remote until every channel closed or `stop` (SIGINT/SIGTERM)
 * aborts, which stops it cleanly.
 */
async function serve(
  remote: Remote,
  log: LogSink,
  stop: AbortSignal,
): Promise<number> {
  const onStop = (): void => {
    log(`${stop.reason}: closing every channel`, "info");
    remote.stop();
  };
  // A signal while the remote was being set up stops it at once.
  if (stop.aborted) onStop();
  else stop.addEventListener("abort", onStop, { once: true });
  try {
    return await remote.run();
  } finally {
    stop.removeEventListener("abort", onStop);
  }
}
