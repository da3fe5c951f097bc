// The iohub command line: dispatches to one subcommand module per verb and
// turns every failure into one line on stderr and a non-zero exit.

import { type Command, describeError, UsageError } from "./lib/cli/common.ts";
import { demoCommand } from "./lib/cli/demo.ts";
import { doctorCommand } from "./lib/cli/doctor.ts";
import { launchCommand } from "./lib/cli/launch.ts";
import { remoteCommand } from "./lib/cli/remote.ts";
import { statsCommand } from "./lib/cli/stats.ts";

const commands: Record<string, Command> = {
  remote: remoteCommand,
  launch: launchCommand,
  doctor: doctorCommand,
  demo: demoCommand,
  stats: statsCommand,
};

function usage(): string {
  const lines = ["usage: iohub <command> [options]", "", "commands:"];
  for (const [name, c] of Object.entries(commands)) {
    lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  }
  lines.push("", "Run 'iohub <command> --help' for a command's options.");
  return lines.join("\n");
}

async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h") {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const cmd = commands[name];
  if (cmd === undefined) {
    throw new UsageError(`unknown command '${name}' (try 'iohub --help')`);
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(cmd.help);
    return 0;
  }
  return await cmd.run(rest);
}

if (import.meta.main) {
  let status: number;
  try {
    status = await main(Deno.args);
  } catch (e) {
    console.error(`iohub: ${describeError(e)}`);
    status = e instanceof UsageError ? 2 : 1;
  }
  Deno.exit(status);
}
