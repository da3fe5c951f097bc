// bin/iohub as a user runs it: --version from deno.json, help, exit
// statuses in every --help, one-line errors, and fds handed to the remote
// living in that one process (a peer sees EOF when the remote drops it).

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { closeFd, readFd, waitReadable, writeFd } from "../../ffi/mod.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { BIN, MAIN, serveModuleThroughBin } from "./cli_run.ts";
import { Client } from "../remote/remote_process.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { withTempDir } from "../temp_dir.ts";

const CONFIG = new URL("../../deno.json", import.meta.url).pathname;

/** Runs bin/iohub with `args`; returns status and output. */
async function bin(
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(BIN, { args, stdin: "null" }).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

Deno.test("bin/iohub --version: deno.json's version and Deno's", async () => {
  const { version } = JSON.parse(Deno.readTextFileSync(CONFIG));
  assert(/^\d+\.\d+\.\d+$/.test(version), `version ${version}`);
  const r = await bin("--version");
  assertEquals(r, {
    code: 0,
    stdout: `iohub ${version} (deno ${Deno.version.deno})\n`,
    stderr: "",
  });
});

Deno.test("bin/iohub help [COMMAND] is --help", async (t) => {
  await t.step("help", async () => {
    const r = await bin("help");
    assertEquals(r.code, 0);
    assertEquals(r, await bin("--help"));
    for (const cmd of ["remote", "launch", "doctor", "demo", "help"]) {
      assertStringIncludes(r.stdout, `\n  ${cmd} `);
    }
  });
  for (const cmd of ["remote", "launch", "doctor", "demo"]) {
    await t.step(`help ${cmd}`, async () => {
      const r = await bin("help", cmd);
      assertEquals(r.code, 0);
      assertEquals(r, await bin(cmd, "--help"));
      assertStringIncludes(r.stdout, `usage: iohub ${cmd}`);
    });
  }
  await t.step("help help is the overview", async () => {
    assertEquals(await bin("help", "help"), await bin("--help"));
  });
  await t.step("help of an unknown command is a usage error", async () => {
    assertEquals(await bin("help", "frob"), {
      code: 2,
      stdout: "",
      stderr: "iohub: unknown command 'frob' (try 'iohub --help')\n",
    });
  });
  await t.step("no command: usage on stderr, exit 2", async () => {
    const r = await bin();
    assertEquals(r.code, 2);
    assertEquals(r.stdout, "");
    assertStringIncludes(r.stderr, "usage: iohub <command>");
  });
});

Deno.test("every --help documents the exit statuses", async () => {
  const common = [
    "exit status:",
    "  0    ",
    "  1    ",
    "  2    ",
  ];
  for (const cmd of [[], ["remote"], ["launch"], ["doctor"], ["demo"]]) {
    const r = await bin(...cmd, "--help");
    for (const line of common) assertStringIncludes(r.stdout, line, cmd[0]);
  }
  const launch = (await bin("launch", "--help")).stdout;
  for (const status of ["3", "4", "5", "6", "130", "143"]) {
    assertStringIncludes(launch, `\n  ${status} `);
  }
});

Deno.test("bin/iohub: a failed system call is one line with errno and its text", async () => {
  // A socket path that cannot be bound is the command line's: exit 2.
  assertEquals(
    await bin("remote", "--device", "testdev,socket=/nonexistent-dir/s"),
    {
      code: 2,
      stdout: "",
      stderr:
        "iohub: bind /nonexistent-dir/s: ENOENT (No such file or directory)\n",
    },
  );
});

Deno.test("main.ts run without a permission names the flag in one line", async (t) => {
  const run = async (flags: string[], args: string[]) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--no-prompt", ...flags, MAIN, ...args],
      stdin: "null",
    }).output();
    return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
  };
  await t.step("no --allow-ffi: libc cannot load", async () => {
    assertEquals(
      await run([], ["remote", "--device", "testdev,socket=/tmp/x"]),
      {
        code: 1,
        stderr:
          "iohub: needs --allow-ffi for libc.so.6 (run through bin/iohub)\n",
      },
    );
  });
  await t.step("no --allow-read: the guest source cannot be read", async () => {
    const source = new URL("../../guest/boot/boot.S", import.meta.url)
      .pathname;
    assertEquals(await run(["--allow-ffi"], ["demo", "--accel", "tcg"]), {
      code: 1,
      stderr:
        `iohub: needs --allow-read for ${source} (run through bin/iohub)\n`,
    });
  });
  await t.step("no --allow-read: a device module cannot load", async () => {
    const mod = "/nonexistent-dir/dev.ts";
    assertEquals(
      await run(["--allow-ffi"], [
        "remote",
        "--device",
        `${mod},socket=/nonexistent-dir/s`,
      ]),
      {
        code: 1,
        stderr:
          `iohub: needs --allow-read for ${mod} (run through bin/iohub)\n`,
      },
    );
  });
  await t.step("--version needs no permission", async () => {
    assertEquals((await run([], ["--version"])).code, 0);
  });
});

Deno.test("bin/iohub remote: the fds it is handed live in the remote alone, so a dropped peer sees EOF", async () => {
  // Two devices: the remote goes on serving dev1 after dropping dev0, so
  // dev0's EOF cannot come from processes exiting, only from no process
  // but the remote holding its fd (`deno task` would hold a copy).
  await assertNoFdLeak(async () => {
    await using remote = spawnWithSockets(BIN, 2, (fds) => [
      "remote",
      "--device",
      `testdev,fd=${fds[0]},id=dev0`,
      "--device",
      `testdev,fd=${fds[1]},id=dev1`,
    ]);
    const [fd0, fd1] = remote.fds;
    const dev1 = new Client(fd1);
    try {
      // A header with an unknown command and size: the remote drops dev0.
      writeFd(fd0, new Uint8Array(16).fill(0xff));
      // Only a hang-up makes the socket readable (the remote sends nothing);
      // the bound is for a broken setup, not a measurement.
      assert(waitReadable(fd0, 30_000), "no EOF: another process holds the fd");
      assertEquals(readFd(fd0, new Uint8Array(16)), 0);
      assertEquals(dev1.cfgRead(0), 0x10b11234n, "dev1 is still served");
    } finally {
      closeFd(fd0);
      dev1.close();
    }
    const { code, stderr } = await remote.finish();
    assertEquals(code, 1);
    const lines = stderr.trim().split("\n");
    assertEquals(lines.length, 2, stderr);
    assertStringIncludes(lines[0], "iohub remote: dev0: closed: ");
    assertStringIncludes(lines[1], "iohub remote: dev1: peer closed");
  });
});

Deno.test("bin/iohub without the pinned Deno or npm says how to set up, in one line", async () => {
  // A copy of bin/iohub in an empty tree, on a PATH with only what it needs
  // to get that far (no npm).
  await withTempDir("iohub-bin-", async (root) => {
    Deno.mkdirSync(`${root}/bin`);
    Deno.mkdirSync(`${root}/tools`);
    Deno.copyFileSync(BIN, `${root}/bin/iohub`);
    for (const tool of ["bash", "dirname", "readlink"]) {
      const path = new TextDecoder().decode(
        (await new Deno.Command("bash", { args: ["-c", `command -v ${tool}`] })
          .output()).stdout,
      ).trim();
      Deno.symlinkSync(path, `${root}/tools/${tool}`);
    }
    const out = await new Deno.Command(`${root}/tools/bash`, {
      args: [`${root}/bin/iohub`, "--version"],
      env: { PATH: `${root}/tools` },
      clearEnv: true,
      stdin: "null",
    }).output();
    assertEquals(out.code, 1);
    assertEquals(
      new TextDecoder().decode(out.stderr),
      `iohub: the pinned Deno is missing and npm is not installed: install Node/npm, then run bash ${root}/scripts/setup.sh\n`,
    );
  });
});

Deno.test("bin/iohub remote serves a device module from a path outside the project", async () => {
  await withTempDir("iohub-binmod-", async (dir) => {
    const mod = `${dir}/tiny.ts`;
    Deno.writeTextFileSync(
      mod,
      `export default () => ({
  identity: { vendorId: 0x1af4, deviceId: 0x10f1 },
  bars: [{ size: 4096, space: "memory" }],
  read(bar, off, data) { data.fill(0); },
  write() {},
});
`,
    );
    await serveModuleThroughBin(mod, "tiny");
  });
});
