// The command iohub starts itself with (the remote behind launch): Deno on
// main.ts from source, the binary alone when compiled.

import { assert, assertEquals } from "@std/assert";
import {
  currentRuntime,
  REMOTE_PERMISSIONS,
  selfCommand,
} from "../../lib/qemu/self_command.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;
const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

Deno.test("selfCommand: a compiled binary runs itself with the arguments", () => {
  assertEquals(
    selfCommand(["remote", "--device", "testdev,fd=5"], {
      standalone: true,
      execPath: "/usr/local/bin/iohub",
    }),
    ["/usr/local/bin/iohub", "remote", "--device", "testdev,fd=5"],
  );
});

Deno.test("selfCommand: from source, Deno runs main.ts under the project config", () => {
  const cmd = selfCommand(["remote", "--quiet"], {
    standalone: false,
    execPath: "/opt/deno",
  });
  // Deno's flags stand between `run` and main.ts, iohub's after it.
  const main = cmd.indexOf(MAIN);
  assertEquals(cmd.slice(0, 2), ["/opt/deno", "run"]);
  assertEquals(cmd.slice(main + 1), ["remote", "--quiet"]);
  const flags = cmd.slice(2, main);
  const allow = (f: string): boolean => f.startsWith("--allow-");
  assertEquals(flags.filter(allow), [...REMOTE_PERMISSIONS]);
  // What the remote needs, pinned here so that dropping one shows: libc,
  // device modules by path and by https: URL, socket and trace files, env.
  assertEquals(
    [...REMOTE_PERMISSIONS].sort().join(" "),
    "--allow-env --allow-ffi --allow-import --allow-net --allow-read --allow-run --allow-write",
  );
  assertEquals(
    flags.filter((f) => !allow(f)),
    ["--quiet", "--no-prompt", "--config", CONFIG],
  );
});

Deno.test("selfCommand: these tests run from source, under this Deno", async () => {
  const runtime = currentRuntime();
  assertEquals(runtime, { standalone: false, execPath: Deno.execPath() });
  const [cmd, ...args] = selfCommand(["--version"]);
  const out = await new Deno.Command(cmd, { args, stdin: "null" }).output();
  assert(out.success);
  assert(new TextDecoder().decode(out.stdout).startsWith("iohub "));
});

Deno.test("selfCommand: bin/iohub grants at least the launched remote's permissions, net, write and env among them", async () => {
  const root = new URL("../../", import.meta.url).pathname;
  const out = await new Deno.Command("bash", {
    args: [
      "-c",
      'source scripts/permissions.sh; printf "%s\\n" "${IOHUB_PERMISSIONS[@]}"',
    ],
    cwd: root,
  }).output();
  assert(out.success);
  const granted = new TextDecoder().decode(out.stdout).trim().split("\n");
  for (const flag of ["--allow-net", "--allow-write", "--allow-env"]) {
    assert(REMOTE_PERMISSIONS.includes(flag), flag);
  }
  for (const flag of REMOTE_PERMISSIONS) {
    assert(granted.includes(flag), `permissions.sh lacks ${flag}`);
  }
});
