// The README's proxy example, run as the README runs it: bin/iohub remote on
// a socket file and, without waiting for it, examples/proxy_client.ts with
// only FFI and read permissions against that socket.

import { assertEquals } from "@std/assert";
import { runTool } from "../../lib/run_tool.ts";
import { BIN } from "../cli/cli_run.ts";
import { withTempDir } from "../temp_dir.ts";

const EXAMPLE = new URL("../../examples/proxy_client.ts", import.meta.url)
  .pathname;

Deno.test("examples/proxy_client.ts: probes, maps, takes an interrupt and resets a remote's testdev", async () => {
  await withTempDir("iohub-proxy-example-", async (dir) => {
    const sock = `${dir}/testdev.sock`;
    // Disposing sends SIGTERM to a remote still running: should the example
    // fail before it connects, the remote would otherwise wait for it.
    await using remote = new Deno.Command(BIN, {
      args: ["remote", "--device", `testdev,socket=${sock}`],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const out = await runTool(Deno.execPath(), [
      "run",
      "--allow-ffi",
      "--allow-read",
      EXAMPLE,
      sock,
    ]);
    assertEquals(out.code, 0, out.stderr);
    assertEquals(
      out.stdout,
      "1234:10b1, BAR0 4096 bytes memory, BAR1 64 bytes I/O\n" +
        "ID register: 0x10b10001\n" +
        "interrupt delivered: true\n" +
        "after reset, IRQ_COUNT: 0\n",
    );
    // One peer per socket: the remote ends once the example hangs up.
    const { code, stderr } = await remote.output();
    assertEquals(code, 0, new TextDecoder().decode(stderr));
  });
});
