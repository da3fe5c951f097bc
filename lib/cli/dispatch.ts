// The iohub command line's dispatch: picks the subcommand module for the
// verb, and answers `--help` and `help [COMMAND]` itself.

import { type Command, EXIT_STATUS_HELP, UsageError } from "./common.ts";
import { demoCommand } from "./demo.ts";
import { doctorCommand } from "./doctor.ts";
import { launchCommand } from "./launch.ts";
import { remoteCommand } from "./remote.ts";
import { statsCommand } from "./stats.ts";

const commands: Record<string, Command> = {
  remote: remoteCommand,
  launch: launchCommand,
  doctor: doctorCommand,
  demo: demoCommand,
  stats: statsCommand,
};

/** The `iohub --help` text. */
export function usage(): string {
  const lines = ["usage: iohub <command> [options]", "", "commands:"];
  for (const [name, c] of Object.entries(commands)) {
    lines.push(`  ${name.padEnd(8)} ${c.summary}`);
  }
  lines.push(
    `  ${"help".padEnd(8)} this text, or 'iohub help COMMAND': its options`,
    "",
    "options:",
    "  --version  print iohub's and Deno's versions",
    "  --help     this text",
    "",
    "Run 'iohub <command> --help' for a command's options.",
    "",
    EXIT_STATUS_HELP,
    "  (remote and launch add statuses of their own: see their --help)",
  );
  return lines.join("\n");
}

function commandNamed(name: string): Command {
  const cmd = commands[name];
  if (cmd === undefined) {
    throw new UsageError(`unknown command '${name}' (try 'iohub --help')`);
  }
  return cmd;
}

/** Runs the command line `args`; returns the exit status. */
export async function dispatch(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined) {
    console.error(usage());
    return 2;
  }
  if (name === "--help" || name === "-h") {
    console.log(usage());
    return 0;
  }
  if (name === "help") {
    if (rest.length > 1) {
      throw new UsageError("help: give at most one command");
    }
    console.log(
      rest.length === 0 || rest[0] === "help"
        ? usage()
        : commandNamed(rest[0]).help,
    );
    return 0;
  }
  const cmd = commandNamed(name);
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(cmd.help);
    return 0;
  }
  return await cmd.run(rest);
}
