// `iohub remote`: serves devices over mpqemu to QEMU's x-pci-proxy-dev (or
// any conforming proxy), each on an inherited socket fd or a socket path.

import { parseArgs } from "@std/cli/parse-args";
import { isValidFd } from "../../ffi/mod.ts";
import { BUILTIN_DEVICES, builtinNames } from "../pci/devices/mod.ts";
import { type DeviceSpec, Remote } from "../remote/remote.ts";
import { type Command, UsageError } from "./common.ts";

const HELP = `usage: iohub remote --device TYPE,fd=N[,id=NAME] [--device ...]
       iohub remote --device TYPE,socket=PATH[,id=NAME] [--device ...]

Serves PCI devices to QEMU's x-pci-proxy-dev (mpqemu protocol), each on its
own UNIX stream socket, from one process. Interrupts go straight to KVM
through the irqfd/resamplefd pair the proxy sends with SET_IRQFD.

options:
  --device SPEC   a device to serve (repeatable). SPEC is TYPE followed by:
                    fd=N        an inherited, connected socket fd
                    socket=PATH listen on PATH and serve the first peer
                    id=NAME     name in logs (default TYPE + index)
                  types: ${builtinNames()}
  --poll-us N     after each message, busy-poll N microseconds before
                  sleeping (lower latency, more CPU; default 0)
  --help          this text

Exits 0 when every channel closed normally, 1 when one closed on an error
(each logged as one line on stderr), 2 on a bad command line.`;

/** Parses one --device value into a DeviceSpec (index names the default id). */
export function parseDeviceSpec(value: string, index: number): DeviceSpec {
  const [type, ...opts] = value.split(",");
  const factory = BUILTIN_DEVICES[type];
  if (factory === undefined) {
    throw new UsageError(
      `--device ${value}: unknown device type '${type}' (known: ${builtinNames()})`,
    );
  }
  let id = `${type}${index}`;
  let fd: number | null = null;
  let path: string | null = null;
  for (const opt of opts) {
    const eq = opt.indexOf("=");
    const key = eq < 0 ? opt : opt.slice(0, eq);
    const val = eq < 0 ? "" : opt.slice(eq + 1);
    if (key === "fd" && /^\d+$/.test(val)) {
      fd = Number(val);
    } else if (key === "socket" && val !== "") {
      path = val;
    } else if (key === "id" && /^[\w.-]+$/.test(val)) {
      id = val;
    } else {
      throw new UsageError(
        `--device ${value}: bad option '${opt}' (expected fd=N, socket=PATH or id=NAME)`,
      );
    }
  }
  if ((fd === null) === (path === null)) {
    throw new UsageError(
      `--device ${value}: give exactly one of fd=N and socket=PATH`,
    );
  }
  if (fd !== null) {
    if (fd < 3 || !isValidFd(fd)) {
      throw new UsageError(
        `--device ${value}: fd ${fd} is not an open, inherited fd`,
      );
    }
    return { id, factory, endpoint: { kind: "fd", fd } };
  }
  return { id, factory, endpoint: { kind: "socket", path: path! } };
}

/** Parses `iohub remote` arguments into device specs and options. */
export function parseRemoteArgs(
  args: string[],
): { devices: DeviceSpec[]; pollMicros: number } {
  const parsed = parseArgs(args, {
    string: ["device", "poll-us"],
    collect: ["device"],
    unknown: (arg: string) => {
      throw new UsageError(
        `remote: unknown argument '${arg}' (see 'iohub remote --help')`,
      );
    },
  });
  const values = (parsed.device as string[] | undefined) ?? [];
  if (values.length === 0) {
    throw new UsageError("remote: at least one --device is required");
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
  const pollRaw = (parsed["poll-us"] as string | undefined) ?? "0";
  if (!/^\d+$/.test(pollRaw)) {
    throw new UsageError(
      `remote: --poll-us ${pollRaw}: not a number of microseconds`,
    );
  }
  return { devices, pollMicros: Number(pollRaw) };
}

/** The `iohub remote` subcommand. */
export const remoteCommand: Command = {
  summary: "serve devices to QEMU's x-pci-proxy-dev over mpqemu",
  help: HELP,
  run(args: string[]): Promise<number> {
    const { devices, pollMicros } = parseRemoteArgs(args);
    using remote = new Remote({
      log: (line) => console.error(`iohub remote: ${line}`),
      pollMicros,
    });
    for (const d of devices) remote.addDevice(d);
    return Promise.resolve(remote.run());
  },
};
