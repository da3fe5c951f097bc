// Device code may do network and file I/O (a device backed by a TCP service
// or a file): a module that connects to a local server and writes a marker
// file loads and serves behind bin/iohub remote and behind iohub launch.

import { assert, assertEquals } from "@std/assert";
import { EXIT } from "../../lib/qemu/outcome.ts";
import { haveQemu } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";
import { BIN, serveModuleThroughBin } from "./cli_run.ts";

/**
 * A temporary directory holding a device module that, at import, connects
 * to a server listening here, sends "hello", then writes `marker`; and the
 * server's count of connections that said hello.
 */
async function withNetModule(
  fn: (mod: string, marker: string) => Promise<void>,
): Promise<number> {
  return await withTempDir("iohub-devio-", async (dir) => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    let hellos = 0;
    const accepting = (async () => {
      for await (const conn of listener) {
        const buf = new Uint8Array(5);
        const n = await conn.read(buf);
        if (n === 5 && new TextDecoder().decode(buf) === "hello") hellos++;
        conn.close();
      }
    })();
    try {
      const mod = `${dir}/net_dev.ts`;
      const marker = `${dir}/marker`;
      await Deno.writeTextFile(
        mod,
        `const conn = await Deno.connect({ hostname: "127.0.0.1", port: ${listener.addr.port} });
await conn.write(new TextEncoder().encode("hello"));
conn.close();
await Deno.writeTextFile(${JSON.stringify(marker)}, "connected");
export default () => ({
  identity: { vendorId: 0x1af4, deviceId: 0x10f1 },
  bars: [{ size: 4096, space: "memory" }],
  read(_bar, _off, data) { data.fill(0); },
  write() {},
});
`,
      );
      await fn(mod, marker);
    } finally {
      listener.close();
      await accepting.catch(() => {});
    }
    return hellos;
  });
}

Deno.test("device code: network and file I/O work behind bin/iohub remote", async () => {
  const hellos = await withNetModule(async (mod, marker) => {
    // Answering means the module loaded, so its I/O has run.
    await serveModuleThroughBin(mod, "net");
    assertEquals(await Deno.readTextFile(marker), "connected");
  });
  assertEquals(hellos, 1);
});

Deno.test({
  name: "device code: network and file I/O work behind iohub launch",
  ignore: !haveQemu(),
  async fn(): Promise<void> {
    const hellos = await withNetModule(async (mod, marker) => {
      const out = await new Deno.Command(BIN, {
        args: [
          "launch",
          "--accel",
          "tcg",
          "--device",
          `${mod},id=net`,
          "--timeout",
          "3",
        ],
        stdin: "null",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      // No guest ends the run: it runs to --timeout with the device served.
      assertEquals(out.code, EXIT.TIMEOUT, stderr);
      assert(stderr.includes("net: peer closed the connection"), stderr);
      assertEquals(await Deno.readTextFile(marker), "connected");
    });
    assertEquals(hellos, 1);
  },
});
