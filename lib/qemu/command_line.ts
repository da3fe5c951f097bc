// The two command lines of a launch, QEMU's and our remote's, and the QEMU
// options a user may not pass because launch sets them itself.

import { type Verbosity, verbosityFlags } from "../log.ts";
import { isParamKey, quoteDeviceOption } from "../pci/devices/options.ts";
import { defaultQemu } from "./probe.ts";

/** The I/O port of the isa-debug-exit device the guest ends the run with. */
export const DEBUG_EXIT_PORT = 0xf4;

/** One device to serve: a type `iohub remote --device` knows, and its id. */
export interface LaunchDevice {
  /** Device type, e.g. "testdev". */
  type: string;
  /**
   * Its id: QEMU's proxy device id and the name in the remote's logs; a
   * letter, then letters, digits, '-', '.' or '_'.
   */
  id: string;
  /** A device module's own options, passed on as KEY=VALUE. */
  params?: Readonly<Record<string, string>>;
}

/** What the two command lines are built from. */
export interface CommandLineOptions {
  /** QEMU binary (default: $IOHUB_QEMU, else qemu-system-x86_64 on PATH). */
  qemu?: string;
  /** QEMU accelerator (default kvm). */
  accel?: "kvm" | "tcg";
  /** A raw floppy image to boot; without one SeaBIOS finds nothing and idles. */
  guest?: string;
  /** Guest RAM size in QEMU's syntax, e.g. "64M" (default "64M"). */
  memory?: string;
  /** Passed to the remote as --poll-us. */
  pollMicros?: number;
  /** Passed to the remote as --trace (it may write there). */
  trace?: string;
  /** Passed to the remote as --control (it may create the socket there). */
  control?: string;
  /** Passed to the remote as --quiet or --verbose (default normal). */
  verbosity?: Verbosity;
  /** Passed to the remote as --sandbox, with these as --allow-path. */
  sandbox?: { allowPaths: string[] };
  /** Appended to QEMU's command line (see reservedQemuOption). */
  qemuArgs?: string[];
}

/**
 * QEMU options launch sets itself, each with the launch option that does
 * it: passing them again after `--` would fight launch's choice (a second
 * -m, an accelerator the KVM check did not see, RAM that is not the memfd
 * SYNC_SYSMEM shares).
 */
const RESERVED: Record<string, string> = {
  m: "--memory",
  machine: "--accel",
  M: "--accel",
  accel: "--accel",
  "enable-kvm": "--accel",
  numa: "--memory",
  "mem-path": "--memory",
  serial: "--serial",
  "object memory-backend": "--memory",
};

/**
 * The first QEMU argument in `args` that launch sets itself, as the message
 * naming the launch option to use instead (e.g. "-m: set by iohub launch;
 * use --memory"); null when there is none.
 */
export function reservedQemuOption(args: string[]): string | null {
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([\w-]+)$/.exec(args[i]);
    if (m === null) continue;
    const name = m[1];
    const instead = name === "object" &&
        (args[i + 1] ?? "").startsWith("memory-backend")
      ? RESERVED["object memory-backend"]
      : Object.hasOwn(RESERVED, name)
      ? RESERVED[name]
      : undefined;
    if (instead === undefined) continue;
    const what = name === "object" ? `-object ${args[i + 1]}` : `-${name}`;
    return `${what}: set by iohub launch; use ${instead}`;
  }
  return null;
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
  opts: CommandLineOptions,
  devices: LaunchDevice[],
  fds: number[],
): string[] {
  const accel = opts.accel ?? "kvm";
  const memory = opts.memory ?? "64M";
  const args = [
    opts.qemu ?? defaultQemu(),
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
    // this machine's KVM (see docs/machine.md).
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

/**
 * The remote's arguments after the command (fds: its socket end per
 * device; readyFd: the write end of the pipe it says it is ready on).
 */
export function remoteArguments(
  opts: CommandLineOptions,
  devices: LaunchDevice[],
  fds: number[],
  readyFd: number,
): string[] {
  const args: string[] = [];
  devices.forEach((d, i) => {
    const params = Object.entries(d.params ?? {}).map(([k, v]) => {
      // The remote would read a stray key as an option of its own.
      if (!isParamKey(d.type, k)) {
        throw new RangeError(
          `device ${d.id}: '${k}' is no option of a device module`,
        );
      }
      return `,${k}=${quoteDeviceOption(v)}`;
    });
    args.push(
      "--device",
      `${quoteDeviceOption(d.type)},fd=${fds[i]},id=${d.id}${params.join("")}`,
    );
  });
  if (opts.pollMicros !== undefined) {
    args.push("--poll-us", String(opts.pollMicros));
  }
  // KEY=VALUE in one argument: a value that starts with "-" must not read
  // as an option of its own.
  if (opts.trace !== undefined) args.push(`--trace=${opts.trace}`);
  if (opts.control !== undefined) args.push(`--control=${opts.control}`);
  if (opts.sandbox !== undefined) {
    args.push("--sandbox");
    for (const p of opts.sandbox.allowPaths) args.push(`--allow-path=${p}`);
  }
  args.push(...verbosityFlags(opts.verbosity ?? "normal"));
  args.push("--ready-fd", String(readyFd));
  return args;
}
