// `iohub launch`: one command that starts our remote and QEMU wired to it,
// forwards the guest's serial console, and exits with a status saying how
// the run ended (see lib/qemu/launch.ts).

import { parseArgs } from "@std/cli/parse-args";
import { closeFd, pipe, socketpair } from "../../ffi/mod.ts";
import { type LaunchDevice, reservedQemuOption } from "../qemu/command_line.ts";
import {
  launch,
  launchCommands,
  type LaunchOptions,
  TCG_WARNING,
} from "../qemu/launch.ts";
import { EXIT, qemuLineSeverity } from "../qemu/outcome.ts";
import { DEFAULT_QEMU } from "../qemu/probe.ts";
import { logSink } from "../log.ts";
import {
  type Command,
  StopOnSignals,
  unexpectedArgument,
  UsageError,
  VERBOSITY_OPTIONS,
  verbosityOf,
} from "./common.ts";
import { BUILTIN_DEVICES, builtinNames } from "../pci/devices/mod.ts";
import { isModuleType, moduleUrl } from "../pci/devices/load.ts";
import { parseDeviceValue } from "./device_value.ts";
import { defaultDeviceId } from "./remote.ts";
import { MAX_DEVICES } from "../remote/remote.ts";

const HELP = `usage: iohub launch [options] [-- QEMU-ARGS...]

Starts one 'iohub remote' serving the devices and QEMU with one
x-pci-proxy-dev per device, each pair on its own socketpair, with guest RAM
in a memfd so the proxy can share it. The guest's serial console goes to
stdout; QEMU's and the remote's messages go to stderr. Stops both when
either ends, on --timeout, or on Ctrl-C.

options:
  --device TYPE[,id=NAME]  a device to serve (repeatable; default: testdev).
                           types: ${builtinNames()}, or a device module
                           by path or URL (./my_dev.ts), which also takes
                           its own KEY=VALUE options (ctx.params); a
                           comma inside a value or path is written ,,
  --qemu PATH              QEMU binary (default: $IOHUB_QEMU if set, else
                           ${DEFAULT_QEMU} on PATH)
  --accel kvm|tcg          accelerator (default kvm; under tcg QEMU's proxy
                           delivers no interrupts)
  --guest IMAGE            raw floppy image to boot (default: none, SeaBIOS
                           idles)
  --memory SIZE            guest RAM, e.g. 64M or 1G (default 64M)
  --serial FILE            write the serial console to FILE instead of stdout
  --timeout SECONDS        stop both and fail after this long
  --poll-us N              passed to the remote (busy-poll after each message)
  --trace FILE             passed to the remote: a JSON line per message
  --control PATH           passed to the remote: live state on a UNIX socket,
                           read with 'iohub stats PATH'
  --sandbox                passed to the remote: confine it once its devices
                           are set up (see 'iohub remote --help')
  --allow-path P           with --sandbox, passed to the remote (repeatable)
  --print-command          print the QEMU and remote command lines a run
                           would use, start nothing, exit 0
  --quiet                  print errors only (QEMU's and the remote's too)
  --verbose                also print the remote's per-connection details
  --                       the rest is appended to QEMU's command line;
                           options launch sets itself are refused (-m,
                           -machine/-M, -accel, -enable-kvm, -numa,
                           -mem-path, -serial, -object memory-backend-*):
                           use --memory, --accel, --serial instead
  --help                   this text

environment:
  IOHUB_QEMU               the QEMU binary when --qemu is not given

The guest ends a run by writing a byte v to I/O port 0xf4 (isa-debug-exit);
v = 0 means it passed.

exit status:
  ${EXIT.OK}    the guest passed (debug-exit 0), or QEMU exited 0 by itself
  1    iohub itself failed (one line on stderr says what)
  ${EXIT.USAGE}    bad command line
  ${EXIT.QEMU}    QEMU failed: not found, too old, no multi-process devices,
       no KVM for --accel kvm, exited with an error or was killed
  ${EXIT.REMOTE}    the remote failed: exited non-zero, or died while QEMU ran
  ${EXIT.GUEST}    the guest reported failure (debug-exit v != 0)
  ${EXIT.TIMEOUT}    --timeout elapsed
  ${EXIT.SIGINT}  stopped by SIGINT (Ctrl-C)
  ${EXIT.SIGTERM}  stopped by SIGTERM`;

/** Parses one `--device TYPE[,id=NAME]` value (index names the default id). */
export function parseLaunchDevice(value: string, index: number): LaunchDevice {
  const { type, own, params } = parseDeviceValue(value, {
    id: (v) => /^[A-Za-z][\w.-]*$/.test(v),
  }, "id=NAME, NAME a letter then letters, digits, '-', '.' or '_'");
  if (!isModuleType(type) && !Object.hasOwn(BUILTIN_DEVICES, type)) {
    throw new UsageError(
      `--device ${value}: unknown device type '${type}' (built-ins: ${builtinNames()}; a module is a path or URL)`,
    );
  }
  const id = own.get("id") ?? defaultDeviceId(type, index);
  return { type, id, params };
}

/** What the launch CLI needs beyond LaunchOptions. */
export interface LaunchArgs {
  /** Options for launch(). */
  options: LaunchOptions;
  /** --serial FILE, when given. */
  serial: string | null;
  /** --print-command: print the command lines instead of running. */
  printCommand: boolean;
}

/** Parses `iohub launch` arguments; throws UsageError on a bad one. */
export function parseLaunchArgs(args: string[]): LaunchArgs {
  const parsed = parseArgs(args, {
    string: [
      "device",
      "qemu",
      "accel",
      "guest",
      "memory",
      "serial",
      "timeout",
      "poll-us",
      "trace",
      "control",
      "allow-path",
    ],
    boolean: ["print-command", "sandbox", ...VERBOSITY_OPTIONS],
    collect: ["device", "allow-path"],
    "--": true,
    unknown: (arg: string) => {
      if (!arg.startsWith("-")) {
        throw new UsageError(
          `launch: unexpected argument '${arg}' (QEMU arguments go after --)`,
        );
      }
      throw unexpectedArgument("launch", arg, args);
    },
  });
  const given = (parsed.device as string[] | undefined) ?? [];
  const values = given.length > 0 ? given : ["testdev"];
  if (values.length > MAX_DEVICES) {
    throw new UsageError(
      `launch: ${values.length} devices, at most ${MAX_DEVICES} per remote`,
    );
  }
  const devices = values.map((v, i) => parseLaunchDevice(v, i));
  const ids = new Set<string>();
  for (const d of devices) {
    if (ids.has(d.id)) {
      throw new UsageError(`launch: duplicate device id '${d.id}'`);
    }
    ids.add(d.id);
  }
  const options: LaunchOptions = { devices };
  const str = (name: string): string | undefined => {
    const v = parsed[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string" || v === "") {
      throw new UsageError(`launch: --${name} needs a value`);
    }
    return v;
  };
  options.qemu = str("qemu");
  const accel = str("accel") ?? "kvm";
  if (accel !== "kvm" && accel !== "tcg") {
    throw new UsageError(`launch: --accel ${accel}: expected kvm or tcg`);
  }
  options.accel = accel;
  options.guest = str("guest");
  if (options.guest !== undefined) {
    try {
      if (!Deno.statSync(options.guest).isFile) throw new Error("not a file");
    } catch (e) {
      throw new UsageError(
        `launch: --guest ${options.guest}: ${
          e instanceof Deno.errors.NotFound
            ? "no such file"
            : (e as Error).message
        }`,
      );
    }
  }
  const memory = str("memory");
  if (memory !== undefined) {
    const m = /^(\d+)([KMGT]?)$/i.exec(memory);
    if (m === null || Number(m[1]) === 0) {
      throw new UsageError(
        `launch: --memory ${memory}: expected a size like 64M or 1G`,
      );
    }
    // A bare number means MiB to -m but bytes to the memfd backend's
    // size=: always hand QEMU a suffix.
    options.memory = `${m[1]}${(m[2] || "M").toUpperCase()}`;
  }
  const timeout = str("timeout");
  if (timeout !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(timeout) || Number(timeout) <= 0) {
      throw new UsageError(
        `launch: --timeout ${timeout}: expected a positive number of seconds`,
      );
    }
    options.timeoutMs = Number(timeout) * 1000;
  }
  const poll = str("poll-us");
  if (poll !== undefined) {
    if (!/^\d+$/.test(poll)) {
      throw new UsageError(
        `launch: --poll-us ${poll}: not a number of microseconds`,
      );
    }
    options.pollMicros = Number(poll);
  }
  options.trace = str("trace");
  options.control = str("control");
  const allowPaths = (parsed["allow-path"] as string[] | undefined) ?? [];
  if (allowPaths.length > 0 && !parsed.sandbox) {
    throw new UsageError("launch: --allow-path needs --sandbox");
  }
  if (parsed.sandbox) options.sandbox = { allowPaths };
  options.qemuArgs = (parsed["--"] as string[] | undefined) ?? [];
  options.verbosity = verbosityOf(parsed, "launch");
  const reserved = reservedQemuOption(options.qemuArgs);
  if (reserved !== null) throw new UsageError(`launch: ${reserved}`);
  return {
    options,
    serial: str("serial") ?? null,
    printCommand: parsed["print-command"] === true,
  };
}

/** `arg` quoted for a POSIX shell where it needs quoting. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg)
    ? arg
    : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * The command lines of a run as two shell lines, with the socket fds and
 * the ready pipe this process would hand each side (made and closed again:
 * nothing starts).
 */
export function printedCommands(options: LaunchOptions): string {
  const n = options.devices?.length ?? 1;
  const pairs = Array.from({ length: n }, () => socketpair());
  const ready = pipe();
  [...pairs.flat(), ...ready].forEach(closeFd);
  const c = launchCommands(
    options,
    pairs.map((p) => p[0]),
    pairs.map((p) => p[1]),
    ready[1],
  );
  return `qemu: ${c.qemu.map(shellQuote).join(" ")}\n` +
    `remote: ${c.remote.map(shellQuote).join(" ")}\n`;
}

/** Writes all of `data`, however many writes it takes. */
function writeAll(
  w: { writeSync(p: Uint8Array): number },
  data: Uint8Array,
): void {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

/** The `iohub launch` subcommand. */
export const launchCommand: Command = {
  summary: "run QEMU with x-pci-proxy-dev devices served by an iohub remote",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const { options, serial, printCommand } = parseLaunchArgs(args);
    // The remote alone imports device modules (a module's top level runs
    // once, and one that never finishes importing is covered by --timeout);
    // whatever directory it runs in, it loads the module named here.
    const given = new Map<string, string>();
    for (const d of options.devices ?? []) {
      if (!isModuleType(d.type)) continue;
      const href = moduleUrl(d.type).href;
      given.set(href, d.type);
      d.type = href;
    }
    if (printCommand) {
      writeAll(Deno.stdout, new TextEncoder().encode(printedCommands(options)));
      return EXIT.OK;
    }
    let out: { writeSync(p: Uint8Array): number; close?(): void } = Deno.stdout;
    if (serial !== null) {
      try {
        out = Deno.openSync(serial, {
          write: true,
          create: true,
          truncate: true,
        });
      } catch (e) {
        throw new UsageError(
          `launch: --serial ${serial}: ${(e as Error).message}`,
        );
      }
    }
    const log = logSink("iohub: ", options.verbosity ?? "normal");
    const qemuLog = logSink("", options.verbosity ?? "normal");
    using stop = new StopOnSignals();
    let serialBroken = false;
    try {
      const result = await launch({
        ...options,
        signal: stop.signal,
        onSerial: (chunk) => {
          if (serialBroken) return;
          try {
            writeAll(out, chunk);
          } catch (e) {
            // A closed stdout must not end the run: keep the guest going.
            serialBroken = true;
            log(`serial output stopped: ${(e as Error).message}`, "error");
          }
        },
        // The remote was given our verbosity and filters its own lines.
        onRemoteLine: (line) => console.error(line),
        onQemuLine: (line) => qemuLog(line, qemuLineSeverity(line)),
        onStarted: (s) => {
          // Only a run that starts QEMU gets the warning: a device the
          // remote refuses is then the only line.
          if (options.accel === "tcg") log(`warning: ${TCG_WARNING}`, "info");
          log(
            `started QEMU (pid ${s.qemuPid}) and the remote (pid ${s.remotePid})`,
            "info",
          );
        },
      });
      // The remote's line starts with the URL it was handed; the user knows
      // the module by what they typed. The URL later in the line (where a
      // module was looked for) stays.
      let message = result.message;
      for (const [href, type] of given) {
        if (message.startsWith(`${href}:`)) {
          message = type + message.slice(href.length);
        }
      }
      log(message, result.status === EXIT.OK ? "info" : "error");
      return result.status;
    } finally {
      if (out !== Deno.stdout) out.close?.();
    }
  },
};
