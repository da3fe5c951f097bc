// Test helper: runs the iohub CLI from source as a user would, capturing
// its exit status and output, or through bin/iohub.

import { assertEquals } from "@std/assert";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { runTool, type ToolOutput } from "../../lib/run_tool.ts";
import { Client } from "../remote/remote_process.ts";

/** main.ts, for tests that spawn the CLI themselves. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Runs main.ts with `args` (all permissions); returns status and output. */
export function iohub(
  ...args: string[]
): Promise<ToolOutput> {
  return iohubWithEnv({}, args);
}

/**
 * iohub() with `env` added to the environment it runs in and writing
 * allowed as `write` says (Deno's --allow-write flag, or none at all).
 */
export function iohubWithEnv(
  env: Record<string, string>,
  args: string[],
  write: string[] = ["--allow-write"],
): Promise<ToolOutput> {
  return runTool(Deno.execPath(), [
    "run",
    "--allow-ffi",
    "--allow-read",
    ...write,
    "--allow-run",
    "--allow-env",
    MAIN,
    ...args,
  ], env);
}

/** A QEMU that does not exist, for tests that must not or cannot run one. */
export const NO_QEMU = "/nonexistent/qemu";

/** What launch (and demo, after `iohub: demo: `) says of --qemu NO_QEMU. */
export const NO_QEMU_MESSAGE =
  `${NO_QEMU} not found (apt-get install qemu-system-x86)`;

/**
 * Runs `iohub launch --print-command ARGS` with IOHUB_QEMU=NO_QEMU and no
 * permission to write, so that nothing may try to run QEMU or leave a file
 * behind; checks that it exits 0 with nothing on stderr, and returns the
 * two lines it printed.
 */
export async function printedLaunch(
  ...args: string[]
): Promise<{ qemu: string; remote: string }> {
  const r = await iohubWithEnv({ IOHUB_QEMU: NO_QEMU }, [
    "launch",
    "--print-command",
    ...args,
  ], []);
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "");
  const [qemu, remote, rest] = r.stdout.split("\n");
  assertEquals(rest, "", "two lines");
  return { qemu, remote };
}

/**
 * Runs main.ts with `args` as iohub() does and asserts it exits 0 (with its
 * output in the message where it does not); returns its stdout.
 */
export async function iohubOk(...args: string[]): Promise<string> {
  const r = await iohub(...args);
  assertEquals(r.code, 0, r.stdout + r.stderr);
  return r.stdout;
}

/** bin/iohub, for tests that run iohub as a user does. */
export const BIN = new URL("../../bin/iohub", import.meta.url).pathname;

/**
 * `bin/iohub remote ARGS` with stderr piped, through bin/iohub with the
 * permissions a user's remote has (a test run with --allow-all would hide
 * what those permissions refuse). A test that does not wait for it at once
 * holds it with `await using`: disposing sends SIGTERM to a remote still
 * running, so failing early leaves none serving.
 */
export function startRemote(...args: string[]): Deno.ChildProcess {
  return new Deno.Command(BIN, {
    args: ["remote", ...args],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
}

/**
 * Serves device module `mod` (identity 1af4:10f1) through `bin/iohub remote`
 * on a socketpair, checks its config identity, and that the remote ends
 * with status 0 once the peer closes.
 */
export async function serveModuleThroughBin(
  mod: string,
  id: string,
): Promise<void> {
  await using remote = spawnWithSockets(BIN, 1, (fds) => [
    "remote",
    "--device",
    `${mod},fd=${fds[0]},id=${id}`,
  ]);
  const c = new Client(remote.fds[0]);
  try {
    assertEquals(c.cfgRead(0), 0x10f11af4n);
  } finally {
    c.close();
  }
  const { code, stderr } = await remote.finish();
  assertEquals(code, 0, stderr);
}
