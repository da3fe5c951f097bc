// The iohub CLI as a user runs it: help texts, one-line errors with exit 2,
// and `remote --device testdev,socket=PATH` serving the peer that connects.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { closeFd, connectUnix, listenUnix, setCloexec } from "../../ffi/mod.ts";
import { iohub, MAIN } from "./cli_run.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { Client } from "../remote/remote_process.ts";
import { withTempDir } from "../temp_dir.ts";

Deno.test("cli: --help on the program and on remote", async () => {
  const top = await iohub("--help");
  assertEquals(top.code, 0);
  assertStringIncludes(top.stdout, "remote");
  const r = await iohub("remote", "--help");
  assertEquals(r.code, 0);
  assertStringIncludes(r.stdout, "--device SPEC");
  assertStringIncludes(r.stdout, "--ready-fd N    for launchers");
});

Deno.test("cli: bad arguments get one clear line and exit 2", async (t) => {
  const cases: [string[], string][] = [
    [["frobnicate"], "iohub: unknown command 'frobnicate'"],
    [["remote"], "iohub: remote: at least one --device is required"],
    [
      ["remote", "--device", "nic,socket=/tmp/nic.sock"],
      "nic: unknown device type",
    ],
    [
      ["remote", "--device", "toString,socket=/tmp/nic.sock"],
      "toString: unknown device type",
    ],
    [
      ["remote", "--device", "testdev,socket=/tmp/a", "--poll-us", "-1"],
      "remote: --poll-us -1: option values are never negative",
    ],
    [
      ["launch", "--timeout", "-3"],
      "launch: --timeout -3: option values are never negative",
    ],
    [
      ["remote", "--device", "testdev"],
      "give exactly one of fd=N and socket=PATH",
    ],
    [
      ["remote", "--device", "testdev,fd=3,socket=/tmp/x"],
      "give exactly one of fd=N and socket=PATH",
    ],
    [["remote", "--device", "testdev,fd=x"], "bad option 'fd=x'"],
    [
      ["remote", "--device", "testdev,fd=999"],
      "fd 999 is not a connected UNIX stream socket: it is not an open fd (EBADF)",
    ],
    [
      ["remote", "--device", "testdev,socket=/tmp/a,color=red"],
      "bad option 'color=red'",
    ],
    [
      ["remote", "--device", "testdev,socket=/tmp/a,id=x,id=y"],
      "option 'id' given twice",
    ],
    [
      ["remote", "--device", "./d.ts,socket=/tmp/a,rate=1,rate=2"],
      "option 'rate' given twice",
    ],
    [
      ["remote", "--device", "./d.ts,socket=/tmp/a,socket=/tmp/b"],
      "option 'socket' given twice",
    ],
    [[
      "remote",
      "--device",
      "testdev,socket=/tmp/a,id=x",
      "--device",
      "testdev,socket=/tmp/b,id=x",
    ], "duplicate device id 'x'"],
    [["remote", "--bogus"], "unknown argument '--bogus'"],
    [
      ["remote", "--device", "testdev,socket=/tmp/a", "--poll-us", "fast"],
      "--poll-us fast",
    ],
    [
      ["remote", "--device", "testdev,socket=/tmp/a", "--ready-fd", "x"],
      "remote: --ready-fd x: not an fd number",
    ],
    [
      ["remote", "--device", "testdev,socket=/tmp/a", "--ready-fd", "999"],
      "remote: --ready-fd 999: fd 999 is not an open descriptor above stderr",
    ],
  ];
  for (const [args, msg] of cases) {
    await t.step(args.join(" "), async () => {
      const r = await iohub(...args);
      assertEquals(r.code, 2);
      assertStringIncludes(r.stderr, msg);
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    });
  }
});

Deno.test("cli: --ready-fd that is a device's fd is refused, exit 2", async () => {
  await using r = spawnWithSockets(Deno.execPath(), 1, ([fd]) => [
    "run",
    "--allow-all",
    MAIN,
    "remote",
    "--device",
    `testdev,fd=${fd}`,
    "--ready-fd",
    String(fd),
  ]);
  const { code, stderr } = await r.finish();
  assertEquals(code, 2, stderr);
  assertEquals(stderr.trim().split("\n").length, 1, stderr);
  assertStringIncludes(stderr, "is a device's fd too");
});

Deno.test("cli: an fd= that is no connected UNIX stream socket is a usage error", async (t) => {
  const cases: [string, string][] = [
    ["7</etc/hostname", "it is not a socket (ENOTSOCK)"],
    ["7>&1", "it is not a socket (ENOTSOCK)"],
  ];
  for (const [redirect, msg] of cases) {
    await t.step(redirect, async () => {
      const out = await new Deno.Command("/bin/sh", {
        args: [
          "-c",
          `exec "$0" run --allow-all "$1" remote --device testdev,fd=7 ${redirect}`,
          Deno.execPath(),
          MAIN,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 2, stderr);
      assertEquals(
        stderr.trim(),
        `iohub: --device testdev,fd=7: fd 7 is not a connected UNIX stream socket: ${msg}`,
      );
    });
  }
});

Deno.test("cli: a listening socket as fd= is a usage error", async () => {
  await withTempDir("iohub-cli-", async (dir) => {
    const fd = listenUnix(`${dir}/listening.sock`);
    try {
      setCloexec(fd, false);
      const r = await iohub("remote", "--device", `testdev,fd=${fd}`);
      assertEquals(r.code, 2, r.stderr);
      assertStringIncludes(
        r.stderr,
        `fd ${fd} is not a connected UNIX stream socket: it is a UNIX stream socket with no peer (getpeername: ENOTCONN)`,
      );
    } finally {
      closeFd(fd);
    }
  });
});

Deno.test("cli: a socket path that cannot be bound is one line, exit 2 as for --control", async () => {
  const r = await iohub(
    "remote",
    "--device",
    "testdev,socket=/nonexistent-dir/s",
  );
  assertEquals(r.code, 2);
  assertEquals(
    r.stderr.trim(),
    "iohub: bind /nonexistent-dir/s: ENOENT (No such file or directory)",
  );
});

/**
 * Runs `iohub remote --device testdev,socket=PATH` with `flags`, connects,
 * reads the vendor/device id, hangs up; returns the remote's stderr.
 */
async function serveOnePeer(flags: string[]): Promise<string> {
  return await withTempDir("iohub-cli-", async (dir) => {
    const path = `${dir}/testdev.sock`;
    // Disposing sends SIGTERM to a remote still running: a check failing
    // before it ends leaves none serving.
    await using child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-ffi",
        "--allow-read",
        "--allow-write",
        MAIN,
        "remote",
        "--device",
        `testdev,socket=${path}`,
        ...flags,
      ],
      stdin: "null",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let fd = -1;
    for (let i = 0; i < 200 && fd < 0; i++) {
      try {
        fd = connectUnix(path);
      } catch {
        await new Promise((r) => setTimeout(r, 25));
      }
    }
    assert(fd >= 0, "remote never listened");
    const c = new Client(fd);
    assertEquals(c.cfgRead(0), 0x10b11234n);
    c.close();
    assertEquals((await child.status).code, 0);
    let exists = true;
    try {
      Deno.statSync(path);
    } catch {
      exists = false;
    }
    assertEquals(exists, false, "the socket path is removed once connected");
    return (await stderr).replaceAll(path, "PATH");
  });
}

Deno.test("cli: remote --device testdev,socket=PATH serves the peer that connects, saying as much as asked", async (t) => {
  const closed =
    "iohub remote: testdev0: peer closed the connection; INTx asserts=0 deasserts=0 resamples=0 reasserts=0; refused accesses=0\n";
  await t.step("default: the close line", async () => {
    assertEquals(await serveOnePeer([]), closed);
  });
  await t.step("--verbose: the connection too", async () => {
    assertEquals(
      await serveOnePeer(["--verbose"]),
      "iohub remote: testdev0: listening on PATH\n" +
        `iohub remote: testdev0: peer connected on PATH\n${closed}`,
    );
  });
  await t.step("--quiet: nothing, as nothing failed", async () => {
    assertEquals(await serveOnePeer(["--quiet"]), "");
  });
});

Deno.test("cli: --quiet and --verbose together are a usage error", async () => {
  const devices: Record<string, string[]> = {
    remote: ["--device", "testdev,socket=/nonexistent-dir/s"],
    launch: [],
    demo: [],
  };
  for (const [cmd, args] of Object.entries(devices)) {
    const r = await iohub(cmd, ...args, "--quiet", "--verbose");
    assertEquals(r.code, 2);
    assertEquals(
      r.stderr,
      `iohub: ${cmd}: --quiet and --verbose exclude each other\n`,
    );
  }
});
