// `iohub stats PATH`: reads a remote's control socket (`--control PATH`)
// and prints its live state as a table, as JSON, or refreshed every second.

import { readControl } from "../remote/control.ts";
import type { RemoteState } from "../remote/remote.ts";
import { type Command, parseCommandArgs, UsageError } from "./common.ts";

const HELP = `usage: iohub stats PATH [--json] [--watch]

Prints the live state of an 'iohub remote' (or 'iohub launch') started
with --control PATH: per device its type, channel, requests per command,
refused accesses, INTx asserts/deasserts/resamples/reasserts and the
service time of requests (p50/p99).

options:
  --json    print the state as JSON
  --watch   refresh every second until Ctrl-C
  --help    this text

exit status:
  0    printed
  1    nothing answers on PATH
  2    bad command line`;

const COMMANDS = [
  ["PCI_CFGREAD", "cfg rd"],
  ["PCI_CFGWRITE", "cfg wr"],
  ["BAR_READ", "bar rd"],
  ["BAR_WRITE", "bar wr"],
] as const;

/** The state as a table, one line per device. */
export function formatStats(s: RemoteState): string {
  const head = [
    "device",
    "type",
    "channel",
    ...COMMANDS.map(([, label]) => label),
    "other",
    "refused",
    "asserts",
    "deasserts",
    "resamples",
    "reasserts",
    "p50 us",
    "p99 us",
  ];
  const rows = s.devices.map((d) => {
    const known = COMMANDS.reduce((n, [cmd]) => n + (d.requests[cmd] ?? 0), 0);
    const all = Object.values(d.requests).reduce((a, b) => a + b, 0);
    return [
      d.id,
      d.type,
      d.channel,
      ...COMMANDS.map(([cmd]) => String(d.requests[cmd] ?? 0)),
      String(all - known),
      String(d.refusals),
      String(d.intx.asserts),
      String(d.intx.deasserts),
      String(d.intx.resamples),
      String(d.intx.reasserts),
      String(d.latencyUs.p50),
      String(d.latencyUs.p99),
    ];
  });
  const widths = head.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => r[i].length))
  );
  const line = (cells: string[]): string =>
    cells.map((c, i) => i < 3 ? c.padEnd(widths[i]) : c.padStart(widths[i]))
      .join("  ").trimEnd();
  const closes = s.peerFdCloses;
  return [
    `remote pid ${s.pid}, up ${
      s.uptimeS.toFixed(1)
    } s, polling window ${s.pollUs} us${
      closes === undefined || closes.pending + closes.dropped === 0
        ? ""
        : `, peer fds: ${closes.pending} closes pending, ${closes.dropped} left open`
    }`,
    line(head),
    ...rows.map(line),
  ].join("\n");
}

/** The `iohub stats` subcommand. */
export const statsCommand: Command = {
  summary: "show a running remote's live counters (its --control socket)",
  help: HELP,
  async run(args: string[]): Promise<number> {
    const parsed = parseCommandArgs("stats", args, {
      boolean: ["json", "watch"],
      positionals: true,
    });
    const paths = parsed._.map(String);
    if (paths.length !== 1) {
      throw new UsageError(
        paths.length === 0
          ? "stats: give the control socket's PATH"
          : `stats: one control socket at a time, not ${paths.length} (${
            paths.join(" ")
          })`,
      );
    }
    const path = paths[0];
    for (;;) {
      let state: RemoteState;
      try {
        state = await readControl(path) as RemoteState;
      } catch (e) {
        console.error(
          `iohub: stats: nothing answers on ${path}: ${(e as Error).message}`,
        );
        return 1;
      }
      const text = parsed.json
        ? JSON.stringify(state, null, 2)
        : formatStats(state);
      if (parsed.watch) console.log("\x1b[2J\x1b[H" + text);
      else console.log(text);
      if (!parsed.watch) return 0;
      await new Promise((r) => setTimeout(r, 1000));
    }
  },
};
