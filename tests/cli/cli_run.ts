// Test helper: runs the iohub CLI from source as a user would, capturing
// its exit status and output, or through bin/iohub.

import { assertEquals } from "@std/assert";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { Client } from "../remote/remote_process.ts";

/** main.ts, for tests that spawn the CLI themselves. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** Runs main.ts with `args` (all permissions); returns status and output. */
export async function iohub(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-run",
      "--allow-env",
      MAIN,
      ...args,
    ],
    stdin: "null",
  }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
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
