// `iohub launch` against real QEMU and a real remote: unusable QEMUs and bad
// command lines, the proxy connecting, each side dying, timeouts, signals,
// and tiny boot-sector guests ending the run through isa-debug-exit.

import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { UsageError } from "../../lib/cli/common.ts";
import { parseLaunchArgs } from "../../lib/cli/launch.ts";
import { kvmUnavailableReason } from "../../lib/kvm/mod.ts";
import { buildGuest } from "../../lib/guest/build.ts";
import { parentDeathPrefix } from "../../lib/qemu/command_line.ts";
import { splitDeviceValue } from "../../lib/pci/devices/options.ts";
import {
  launch,
  launchCommands,
  type LaunchOptions,
  type LaunchStarted,
} from "../../lib/qemu/launch.ts";
import { EXIT, type LaunchOutcome } from "../../lib/qemu/outcome.ts";
import { MIN_QEMU_VERSION, parseQemuVersion } from "../../lib/qemu/probe.ts";
import {
  MAIN,
  NO_QEMU,
  NO_QEMU_MESSAGE,
  printedLaunch,
} from "../cli/cli_run.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { haveBinutils, haveKvm, haveQemu, QEMU } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";
import { gone } from "../process_gone.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;
const FLOPPY_SIZE = 1474560;

const qemuOk = haveQemu();
const kvmOk = qemuOk && haveKvm();
const guestsOk = qemuOk && haveBinutils();
// What the launcher's plumbing does (connecting, stopping, blaming a side)
// does not depend on the accelerator: those tests run under TCG where KVM
// is missing, and under the default (kvm) where it is present.
const ACCEL = kvmOk ? "kvm" : "tcg";
const ACCEL_ARGS = kvmOk ? [] : ["--accel", "tcg"];

/** A test that needs QEMU, skipped where there is none (see requirements.ts). */
function qemuTest(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
): void {
  Deno.test({ name, ignore: !qemuOk, fn });
}

/** Runs `iohub launch ARGS` as the user would, through the task's permissions. */
function spawnLaunch(
  args: string[],
  env: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-run",
      "--allow-read",
      "--allow-write=/tmp",
      "--allow-env",
      MAIN,
      "launch",
      ...args,
    ],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

async function cli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await spawnLaunch(args, env).output();
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/**
 * A 1.44 MB floppy image whose boot sector is fixture `name`, assembled with
 * `symbols` defined.
 */
async function floppy(
  name: string,
  dir: string,
  symbols: Record<string, number> = {},
): Promise<string> {
  const bin = await Deno.readFile(
    await buildGuest(`${FIXTURES}${name}.S`, { origin: 0x7c00, symbols }),
  );
  assertEquals(bin.length, 512, `${name} must assemble to one sector`);
  const img = new Uint8Array(FLOPPY_SIZE);
  img.set(bin);
  const suffix = Object.entries(symbols).map(([k, v]) => `-${k}${v}`).join("");
  const path = `${dir}/${name}${suffix}.img`;
  await Deno.writeFile(path, img);
  return path;
}

/** launch() with the test QEMU, checked for fd leaks. */
async function run(opts: LaunchOptions): Promise<LaunchOutcome> {
  let out: LaunchOutcome | null = null;
  await assertNoFdLeak(async () => {
    out = await launch({ qemu: QEMU, accel: ACCEL, ...opts });
  });
  return out!;
}

/** Options whose onStarted resolves `started` (to kill a side mid-run). */
function watched(
  opts: LaunchOptions,
): { opts: LaunchOptions; started: Promise<LaunchStarted> } {
  let resolve = (_: LaunchStarted): void => {};
  const started = new Promise<LaunchStarted>((r) => resolve = r);
  return { opts: { ...opts, onStarted: resolve }, started };
}

/** A run in which one side is killed with SIGKILL once both have started. */
async function killMidRun(
  side: "qemuPid" | "remotePid",
): Promise<LaunchOutcome> {
  const w = watched({ timeoutMs: 10_000 });
  const running = run(w.opts);
  const s = await w.started;
  await sleep(700);
  Deno.kill(s[side], "SIGKILL");
  return await running;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A fake QEMU: a shell script printing `version` and `devices`. */
async function fakeQemu(
  dir: string,
  version: string,
  devices: string,
): Promise<string> {
  const path = `${dir}/qemu-${crypto.randomUUID()}`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh
if [ "$1" = --version ]; then printf '%s' '${version}'; exit 0; fi
printf '%s' '${devices}'
`,
  );
  await Deno.chmod(path, 0o755);
  return path;
}

Deno.test("launch: a missing QEMU is exit 3 with one line", async (t) => {
  await t.step("library", async () => {
    const out = await run({ qemu: NO_QEMU });
    assertEquals(out.status, EXIT.QEMU);
    assertEquals(out.end, "qemu-unusable");
    assertEquals(out.message, NO_QEMU_MESSAGE);
  });
  await t.step(
    "a signal first is the run's end, not the probe's failure",
    async () => {
      // A terminal's Ctrl-C reaches the probe too: what it made fail is not
      // what ended the run.
      const stop = new AbortController();
      stop.abort("SIGINT");
      const out = await run({ qemu: NO_QEMU, signal: stop.signal });
      assertEquals([out.status, out.end], [EXIT.SIGINT, "aborted"]);
    },
  );
  await t.step("CLI, default name not on PATH", async () => {
    const r = await cli([], { PATH: "/nonexistent" });
    assertEquals(r.code, EXIT.QEMU);
    assertEquals(
      r.stderr,
      "iohub: qemu-system-x86_64 not found (apt-get install qemu-system-x86)\n",
    );
  });
});

Deno.test("launch: binaries that are not a usable QEMU are exit 3", async (t) => {
  await withTempDir("iohub-launch-", async (dir) => {
    await t.step("not QEMU at all", async () => {
      const out = await run({ qemu: await fakeQemu(dir, "", "") });
      assertEquals(out.status, EXIT.QEMU);
      assertStringIncludes(
        out.message,
        "is not QEMU: '--version' printed nothing",
      );
    });
    await t.step("QEMU without the multi-process devices", async () => {
      const qemu = await fakeQemu(
        dir,
        "QEMU emulator version 7.2.0\n",
        'name "e1000", bus PCI\nname "isa-debug-exit", bus ISA\n',
      );
      const r = await cli(["--qemu", qemu]);
      assertEquals(r.code, EXIT.QEMU);
      assertMatch(
        r.stderr,
        /^iohub: \S+ \(QEMU 7\.2\.0\) lacks the multi-process devices: '-device help' has no x-pci-proxy-dev/,
      );
      assertEquals(r.stderr.split("\n").length, 2, "one line");
    });
    await t.step("QEMU older than 6.0", async () => {
      const qemu = await fakeQemu(
        dir,
        "QEMU emulator version 5.2.0 (Debian)\n",
        'name "x-pci-proxy-dev", bus PCI\n',
      );
      const out = await run({ qemu });
      assertEquals(out.status, EXIT.QEMU);
      assertStringIncludes(out.message, "is QEMU 5.2.0, too old");
    });
  });
});

Deno.test("launch: version banners parse", () => {
  assertEquals(
    parseQemuVersion("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg)"),
    [7, 2, 22],
  );
  assertEquals(parseQemuVersion("QEMU emulator version 6.0\n"), [6, 0, 0]);
  assertEquals(parseQemuVersion("bash 5.2"), null);
  assertEquals(MIN_QEMU_VERSION, [6, 0]);
});

Deno.test("launch: argument parsing", () => {
  const a = parseLaunchArgs([
    "--device",
    "testdev,id=a",
    "--device",
    "testdev",
    "--memory",
    "128",
    "--timeout",
    "1.5",
    "--poll-us",
    "20",
    "--accel",
    "tcg",
    "--",
    "-smp",
    "2",
  ]);
  assertEquals(a.options.devices, [
    { type: "testdev", id: "a", params: {} },
    { type: "testdev", id: "testdev1", params: {} },
  ]);
  assertEquals(a.options.memory, "128M");
  assertEquals(a.options.timeoutMs, 1500);
  assertEquals(a.options.pollMicros, 20);
  assertEquals(a.options.accel, "tcg");
  assertEquals(a.options.qemuArgs, ["-smp", "2"]);
  assertEquals(a.printCommand, false);
  // Other -object types are the user's to add.
  assertEquals(
    parseLaunchArgs(["--", "-object", "rng-random,id=r"]).options.qemuArgs,
    ["-object", "rng-random,id=r"],
  );
  assertEquals(a.serial, null);
  const d = parseLaunchArgs([]);
  assertEquals(d.options.devices, [
    { type: "testdev", id: "testdev0", params: {} },
  ]);
  // A device module takes options of its own, passed on to the remote.
  const m = parseLaunchArgs(["--device", "./dev.ts,rate=5,id=a,mode=x=y"]);
  assertEquals(m.options.devices, [
    { type: "./dev.ts", id: "a", params: { rate: "5", mode: "x=y" } },
  ]);
  // The same grammar as remote's: a module path may hold commas, and ",,"
  // is a comma inside a part, as in QEMU's options.
  assertEquals(
    parseLaunchArgs(["--device", "./a,b.ts,rate=1"]).options.devices,
    [{ type: "./a,b.ts", id: "a_b0", params: { rate: "1" } }],
  );
  assertEquals(
    parseLaunchArgs(["--device", "./x,,y=1.ts,list=a,,b,,,id=z"]).options
      .devices,
    [{ type: "./x,y=1.ts", id: "z", params: { list: "a,b," } }],
  );
  // QEMU ids start with a letter: a default id from another name gets one.
  assertEquals(
    parseLaunchArgs(["--device", "./1dev.ts", "--device", "./_u.ts"]).options
      .devices?.map((d) => d.id),
    ["dev1dev0", "dev_u1"],
  );
  // A name ending in a digit keeps its number apart from the index.
  assertEquals(
    parseLaunchArgs(["--device", "./uart16550.ts", "--device", "./7.ts"])
      .options.devices?.map((d) => d.id),
    ["uart16550-0", "dev7-1"],
  );
  assertEquals(d.options.accel, "kvm");
  const bad: [string[], string][] = [
    [["--device", "nic"], "unknown device type 'nic'"],
    [
      Array.from({ length: 257 }, () => ["--device", "testdev"]).flat(),
      "launch: 257 devices, at most 256 per remote",
    ],
    [
      ["--device", "toString"],
      "--device toString: unknown device type 'toString'",
    ],
    [["--device", "testdev,fd=3"], "bad option 'fd=3'"],
    [["--device", "testdev,id=1x"], "bad option 'id=1x'"],
    [["--device", "testdev,rate=5"], "bad option 'rate=5'"],
    [["--device", "./d.ts,rate=1,rate=2"], "option 'rate' given twice"],
    [["--device", "./d.ts,id=a,id=b"], "option 'id' given twice"],
    [["--device", "./d.ts,fd=3"], "bad option 'fd=3'"],
    [["--device", "./d.ts,2x=3"], "bad option '2x=3'"],
    [["--device", "testdev,id=a", "--device", "testdev,id=a"], "duplicate"],
    [["--accel", "xen"], "--accel xen: expected kvm or tcg"],
    [["--memory", "0"], "--memory 0"],
    [["--memory", "lots"], "--memory lots"],
    [["--timeout", "0"], "--timeout 0"],
    [["--timeout", "soon"], "--timeout soon"],
    [["--poll-us", "1.5"], "--poll-us 1.5"],
    [["--guest", "/nonexistent.img"], "no such file"],
    [["--frob"], "unknown argument '--frob'"],
    [["stray"], "unexpected argument 'stray'"],
    [["--qemu"], "--qemu needs a value"],
    [["--", "-m", "128M"], "-m: set by iohub launch; use --memory"],
    [["--", "-M", "q35"], "-M: set by iohub launch; use --accel"],
    [["--", "--machine", "pc"], "-machine: set by iohub launch; use --accel"],
    [["--", "-accel", "tcg"], "-accel: set by iohub launch; use --accel"],
    [["--", "-enable-kvm"], "-enable-kvm: set by iohub launch; use --accel"],
    [["--", "-numa", "node"], "-numa: set by iohub launch; use --memory"],
    [["--", "-serial", "null"], "-serial: set by iohub launch; use --serial"],
    [
      ["--", "-smp", "2", "-object", "memory-backend-ram,id=r,size=1G"],
      "-object memory-backend-ram,id=r,size=1G: set by iohub launch; use --memory",
    ],
  ];
  for (const [args, msg] of bad) {
    const e = assertThrows(() => parseLaunchArgs(args), UsageError);
    assertStringIncludes(e.message, msg, args.join(" "));
  }
});

Deno.test("launch: a bad command line is exit 2 with one line", async () => {
  const r = await cli(["--accel", "xen"]);
  assertEquals(r.code, EXIT.USAGE);
  assertEquals(r.stderr, "iohub: launch: --accel xen: expected kvm or tcg\n");
  const h = await cli(["--help"]);
  assertEquals(h.code, 0);
  assertStringIncludes(h.stdout, "exit status:");
});

Deno.test("launch: --print-command prints both command lines, starts nothing", async () => {
  const { qemu, remote } = await printedLaunch(
    "--accel",
    "tcg",
    "--memory",
    "96M",
    "--device",
    "testdev,id=a",
    "--device",
    "examples/blinker.ts,id=b,period_ms=50",
    "--",
    "-smp",
    "2",
  );
  assertMatch(
    qemu,
    /^qemu: (\S*setpriv --pdeathsig TERM -- )?\/nonexistent\/qemu -accel tcg -m 96M -object memory-backend-memfd,id=mem,size=96M /,
  );
  assertMatch(
    qemu,
    / -device x-pci-proxy-dev,id=a,fd=(\d+) -device x-pci-proxy-dev,id=b,fd=(\d+) -smp 2$/,
  );
  assertMatch(
    remote,
    /^remote: .* remote --device testdev,fd=\d+,id=a --device file:\/\/\S*\/examples\/blinker\.ts,fd=\d+,id=b,period_ms=50 --ready-fd \d+$/,
  );
  const bad = await cli(["--print-command", "--", "-m", "1G"]);
  assertEquals(bad.code, EXIT.USAGE);
  assertEquals(
    bad.stderr,
    "iohub: launch: -m: set by iohub launch; use --memory\n",
  );
});

qemuTest(
  "launch: QEMU's proxies connect to our remote; --timeout is exit 6",
  async () => {
    const remoteLines: string[] = [];
    const out = await run({
      devices: [{ type: "testdev", id: "a" }, { type: "testdev", id: "b" }],
      timeoutMs: 1500,
      onRemoteLine: (l) => remoteLines.push(l),
    });
    assertEquals(out.status, EXIT.TIMEOUT, out.message);
    assertEquals(out.end, "timeout");
    assertEquals(
      out.message,
      "timed out after 1.5 s; stopped QEMU and the remote",
    );
    // Each close line proves that device's proxy connected and then closed
    // its end when QEMU stopped; the remote then exited by itself.
    for (const id of ["a", "b"]) {
      assert(
        remoteLines.some((l) =>
          l.startsWith(`iohub remote: ${id}: peer closed the connection;`)
        ),
        remoteLines.join("\n"),
      );
    }
    assertEquals(out.remoteLines, remoteLines);
    assertEquals(out.remote?.code, 0);
  },
);

qemuTest("launch: the remote dying stops QEMU, exit 4", async () => {
  const out = await killMidRun("remotePid");
  assertEquals(out.status, EXIT.REMOTE, out.message);
  assertEquals(
    out.message,
    "remote was killed by SIGKILL while QEMU ran; stopped QEMU",
  );
  assert(out.qemu !== null);
});

qemuTest(
  "launch: a remote failing at start is blamed, exit 4, QEMU not started",
  async () => {
    let started = false;
    const out = await run({
      // Stands in for a remote that cannot serve: says why and exits 1.
      remoteCommand: [
        "/bin/sh",
        "-c",
        "echo 'testdev0: cannot serve' >&2; exit 1",
      ],
      timeoutMs: 10_000,
      onStarted: () => started = true,
    });
    assertEquals(out.status, EXIT.REMOTE, out.message);
    assertEquals(
      out.message,
      "remote exited with status 1 (testdev0: cannot serve) before it was ready; QEMU was not started",
    );
    assert(!started);
    assertEquals(out.qemu, null);
  },
);

qemuTest(
  "launch: a throwing callback rejects, leaving no process behind",
  async () => {
    let pids: LaunchStarted | null = null;
    await assertNoFdLeak(async () => {
      await assertRejects(
        () =>
          launch({
            qemu: QEMU,
            accel: ACCEL,
            onStarted: (s) => {
              pids = s;
              throw new Error("callback failed");
            },
          }),
        Error,
        "callback failed",
      );
    });
    assert(pids !== null);
    const { qemuPid, remotePid } = pids as LaunchStarted;
    for (const pid of [qemuPid, remotePid]) {
      assertThrows(() => Deno.kill(pid, "SIGCONT"), Deno.errors.NotFound);
    }
  },
);

qemuTest("launch: QEMU dying stops the remote, exit 3", async () => {
  const out = await killMidRun("qemuPid");
  assertEquals(out.status, EXIT.QEMU, out.message);
  // The remote exits by itself: cleanly on EOF (also a reset or broken
  // pipe), or with the error of a message QEMU's death cut in half.
  assertMatch(
    out.message,
    /^QEMU was killed by SIGKILL(; remote exited with status 1 \(.*hung up.*\))?$/,
  );
  assertEquals(out.remote?.signal, null);
});

qemuTest(
  "launch: QEMU seen ending just after the remote it broke is blamed, exit 3",
  async () => {
    await withTempDir("iohub-launch-", async (dir) => {
      const fake = `${dir}/qemu`;
      await Deno.writeTextFile(
        fake,
        `#!/bin/sh\nexec '${Deno.execPath()}' run -A --quiet '${FIXTURES}fake_qemu_dies_late.ts' "$@"\n`,
      );
      await Deno.chmod(fake, 0o755);
      const out = await run({ qemu: fake, timeoutMs: 30_000 });
      assertEquals(out.status, EXIT.QEMU, out.message);
      assertEquals(out.end, "qemu-failed");
      assertMatch(
        out.message,
        /^QEMU was killed by SIGKILL; remote exited with status 1 \(/,
      );
    });
  },
);

qemuTest(
  "launch: after --timeout a stopped remote is continued with its SIGTERM, not left for SIGKILL",
  async () => {
    const w = watched({ timeoutMs: 1000 });
    const running = run(w.opts);
    const s = await w.started;
    Deno.kill(s.remotePid, "SIGSTOP");
    const out = await running;
    assertEquals(out.status, EXIT.TIMEOUT, out.message);
    // A stopped process only acts on SIGTERM once continued; left stopped,
    // it would sit out the grace period and then need SIGKILL. Started
    // means ready, so the remote handles SIGTERM (143) or, continued, first
    // sees QEMU's sockets close (0): either way it exits by itself.
    assertEquals(out.remote?.signal, null, out.message);
    assert([0, 143].includes(out.remote!.code), `${out.remote!.code}`);
  },
);

Deno.test({
  name: "launch: --accel kvm without KVM is exit 3 saying why, before starting",
  ignore: !qemuOk || kvmUnavailableReason() === null,
  async fn(): Promise<void> {
    let started = false;
    const out = await run({ accel: "kvm", onStarted: () => started = true });
    assertEquals(out.status, EXIT.QEMU, out.message);
    assertEquals(out.end, "qemu-unusable");
    assertMatch(
      out.message,
      /^-accel kvm: open \/dev\/kvm: E[A-Z]+ \(.+\); --accel tcg runs without KVM, but then QEMU's proxy delivers no device interrupts$/,
    );
    assert(!started, "neither process was started");
    const r = await cli(["--timeout", "5"]);
    assertEquals(r.code, EXIT.QEMU);
    assertEquals(r.stderr, `iohub: ${out.message}\n`);
  },
});

qemuTest("launch: QEMU failing to start is exit 3 with its error", async () => {
  const out = await run({ accel: "tcg", qemuArgs: ["-bogus-option"] });
  assertEquals(out.status, EXIT.QEMU, out.message);
  assertEquals(out.end, "qemu-failed");
  assertStringIncludes(out.message, "QEMU exited with status 1 (");
  assertStringIncludes(out.message, "-bogus-option");
});

Deno.test({
  name: "launch: how the guest ends the run decides the status",
  ignore: !guestsOk,
  async fn(t): Promise<void> {
    await withTempDir("iohub-launch-", async (dir) => {
      const pass = await floppy("launch_exit", dir, { EXIT_CODE: 0 });
      const fail = await floppy("launch_exit", dir, { EXIT_CODE: 3 });
      await t.step({
        name: "v = 0 (kvm): passed, exit 0, serial lines delivered",
        ignore: !kvmOk,
        fn: async () => {
          const lines: string[] = [];
          const out = await run({
            guest: pass,
            timeoutMs: 20_000,
            onSerialLine: (l) => lines.push(l),
          });
          assertEquals(out.status, EXIT.OK, out.message);
          assertEquals(out.end, "guest-passed");
          assertEquals(out.guestCode, 0);
          assertEquals(lines, ["launch fixture: exit 0"]);
          assertEquals(out.remote?.code, 0);
        },
      });
      // TCG boots in a tenth of KVM's time here and needs no interrupts.
      await t.step("v = 3 (tcg): guest failure, exit 5", async () => {
        const out = await run({ guest: fail, accel: "tcg", timeoutMs: 20_000 });
        assertEquals(out.status, EXIT.GUEST, out.message);
        assertEquals(out.message, "guest reported failure code 3");
        assertEquals(out.guestCode, 3);
      });
      await t.step(
        "one image, two runs at once, a comma in its path (tcg): both pass",
        async () => {
          const shared = `${dir}/pass,shared.img`;
          await Deno.copyFile(pass, shared);
          let outs: LaunchOutcome[] = [];
          await assertNoFdLeak(async () => {
            outs = await Promise.all([0, 1].map(() =>
              launch({
                qemu: QEMU,
                guest: shared,
                accel: "tcg",
                timeoutMs: 20_000,
              })
            ));
          });
          assertEquals(outs.length, 2);
          for (const out of outs) {
            assertEquals(out.status, EXIT.OK, out.message);
            assertEquals(out.end, "guest-passed");
          }
        },
      );
      await t.step(
        "ACPI power-off (tcg): QEMU exited normally, exit 0",
        async () => {
          const out = await run({
            guest: await floppy("launch_poweroff", dir),
            accel: "tcg",
            timeoutMs: 20_000,
          });
          assertEquals(out.status, EXIT.OK, out.message);
          assertEquals(out.end, "qemu-exited");
          assertEquals(out.message, "QEMU exited normally");
          assertEquals(out.guestCode, null);
        },
      );
      await t.step("0xcf9 reset (tcg): the guest boots again", async () => {
        const lines: string[] = [];
        const out = await run({
          guest: await floppy("launch_reset", dir),
          accel: "tcg",
          timeoutMs: 20_000,
          onSerialLine: (l) => lines.push(l),
        });
        assertEquals(out.status, EXIT.OK, out.message);
        assertEquals(out.end, "guest-passed");
        assertEquals(lines, [
          "launch fixture: first boot, resetting",
          "launch fixture: second boot",
        ]);
      });
      await t.step("CLI (tcg): serial on stdout, exit 5", async () => {
        const r = await cli([
          "--guest",
          fail,
          "--accel",
          "tcg",
          "--timeout",
          "20",
        ]);
        assertEquals(r.code, EXIT.GUEST, r.stderr);
        assertEquals(r.stdout, "launch fixture: exit 3\r\n");
        assertStringIncludes(
          r.stderr,
          "iohub: guest reported failure code 3\n",
        );
      });
      await t.step(
        "CLI: --serial FILE, --accel tcg warns and passes",
        async () => {
          const log = `${dir}/serial.log`;
          const r = await cli([
            "--guest",
            pass,
            "--accel",
            "tcg",
            "--serial",
            log,
            "--timeout",
            "20",
          ]);
          assertEquals(r.code, EXIT.OK, r.stderr);
          assertEquals(r.stdout, "");
          assertEquals(
            await Deno.readTextFile(log),
            "launch fixture: exit 0\r\n",
          );
          assertStringIncludes(
            r.stderr,
            "delivers no interrupts under --accel tcg",
          );
        },
      );
    });
  },
});

/** Starts the CLI, waits for its "started" line, sends `signo`, returns it all. */
async function interrupt(
  signo: Deno.Signal,
): Promise<{ code: number; stderr: string }> {
  const child = spawnLaunch(["--timeout", "20", ...ACCEL_ARGS]);
  const dec = new TextDecoder();
  let stderr = "";
  const reader = child.stderr.getReader();
  while (!stderr.includes("iohub: started QEMU")) {
    const { value, done } = await reader.read();
    if (done) break;
    stderr += dec.decode(value, { stream: true });
  }
  await sleep(500);
  child.kill(signo);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    stderr += dec.decode(value, { stream: true });
  }
  await child.stdout.cancel();
  return { code: (await child.status).code, stderr };
}

qemuTest(
  "launch: SIGINT and SIGTERM stop both, exit 130 and 143",
  async (t) => {
    await t.step("SIGINT", async () => {
      const r = await interrupt("SIGINT");
      assertEquals(r.code, EXIT.SIGINT, r.stderr);
      assertStringIncludes(
        r.stderr,
        "iohub: interrupted by SIGINT; stopped QEMU and the remote\n",
      );
      assertStringIncludes(r.stderr, "testdev0: peer closed the connection");
    });
    await t.step("SIGTERM", async () => {
      const r = await interrupt("SIGTERM");
      assertEquals(r.code, EXIT.SIGTERM, r.stderr);
      assertStringIncludes(r.stderr, "interrupted by SIGTERM");
    });
  },
);

qemuTest(
  "launch: a launcher killed by SIGKILL leaves no QEMU or remote",
  async () => {
    if (parentDeathPrefix().length === 0) {
      console.log("SKIP: setpriv (util-linux) not installed");
      return;
    }
    // Disposing sends SIGTERM to a launcher still running (it stops QEMU and
    // the remote): a check failing before the SIGKILL leaves nothing behind.
    await using child = spawnLaunch(["--timeout", "20", ...ACCEL_ARGS]);
    const dec = new TextDecoder();
    let stderr = "";
    const reader = child.stderr.getReader();
    let m: RegExpMatchArray | null = null;
    while (m === null) {
      const { value, done } = await reader.read();
      if (done) break;
      stderr += dec.decode(value, { stream: true });
      m = stderr.match(/QEMU \(pid (\d+)\) and the remote \(pid (\d+)\)/);
    }
    assert(m !== null, stderr);
    const pids = [Number(m[1]), Number(m[2])];
    assert(!pids.some(gone), "both run");
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stderr.cancel();
    await child.stdout.cancel();
    const until = Date.now() + 5000;
    while (!pids.every(gone) && Date.now() < until) await sleep(50);
    assert(pids.every(gone), `still running: ${pids.filter((p) => !gone(p))}`);
  },
);

/** Writes device module `name` with `source` into `dir`; returns its path. */
async function deviceModule(
  dir: string,
  name: string,
  source: string,
): Promise<string> {
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, source);
  return path;
}

/** `iohub launch --accel tcg --device DEVICE --timeout SECONDS`. */
function launchTcg(device: string, seconds: number): ReturnType<typeof cli> {
  return cli(["--accel", "tcg", "--device", device, "--timeout", `${seconds}`]);
}

/**
 * Serves device module `name` (`source`, in a temporary directory) as
 * `--device PATH<options>` under launchTcg for 2 s with no guest to end the
 * run: checks that --timeout ended it (exit 6) and returns the module's path
 * and what launch wrote to stderr.
 */
async function timedOutServing(
  name: string,
  source: string,
  options = "",
): Promise<{ mod: string; stderr: string }> {
  return await withTempDir("iohub-launch-", async (dir) => {
    const mod = await deviceModule(dir, name, source);
    const r = await launchTcg(`${mod}${options}`, 2);
    assertEquals(r.code, EXIT.TIMEOUT, r.stderr);
    return { mod, stderr: r.stderr };
  });
}

const MODEL = (bar: number, vendor: number): string =>
  `export default () => ({
  identity: { vendorId: ${vendor}, deviceId: 0x10f1 },
  bars: [{ size: ${bar}, space: "memory" }],
  read(_bar, _off, data) { data.fill(0); },
  write() {},
});
`;

/** Command lines of processes still running whose command line has `s`. */
function processesWith(s: string): string[] {
  const found: string[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || gone(Number(e.name))) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`);
      if (cmd.includes(s)) found.push(cmd.replaceAll("\0", " "));
    } catch {
      // Exited meanwhile.
    }
  }
  return found;
}

qemuTest(
  "launch: a module that is not there names the URL it was looked for at",
  async () => {
    await withTempDir("iohub-launch-", async (dir) => {
      const r = await launchTcg(`${dir}/nothere.ts`, 30);
      assertEquals(r.code, EXIT.USAGE, r.stderr);
      assertStringIncludes(
        r.stderr,
        `iohub: ${dir}/nothere.ts: cannot load the module: Module not found "file://${dir}/nothere.ts"`,
      );
    });
  },
);

qemuTest(
  "launch: a device the remote refuses is its one line and exit 2; QEMU never starts",
  async (t) => {
    await withTempDir("iohub-launch-", async (dir) => {
      const cases: [string, string, string][] = [
        [
          "throws.ts",
          `export default () => { throw new Error("no backing store"); };\n`,
          "the device factory failed: no backing store",
        ],
        [
          "bad_bar.ts",
          MODEL(3000, 0x1af4),
          "malformed device model: bars[0].size: 3000 is not a power of two",
        ],
        [
          "bad_vendor.ts",
          MODEL(4096, 0xffff),
          "malformed device model: ",
        ],
      ];
      for (const [name, source, problem] of cases) {
        await t.step(name, async () => {
          const mod = await deviceModule(dir, name, source);
          const r = await launchTcg(mod, 30);
          assertEquals(r.code, EXIT.USAGE, r.stderr);
          // One line, naming the module and the problem: no QEMU lines, no
          // "started", no TCG warning.
          assertEquals(r.stderr.split("\n").length, 2, r.stderr);
          assertStringIncludes(r.stderr, `iohub: ${mod}: ${problem}`);
          // The same line `iohub remote` prints for it.
          const remote = await new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "-A",
              MAIN,
              "remote",
              "--device",
              `${mod},socket=${dir}/${name}.sock`,
            ],
            stdin: "null",
          }).output();
          assertEquals(remote.code, EXIT.USAGE);
          assertEquals(new TextDecoder().decode(remote.stderr), r.stderr);

          let started = false;
          const out = await run({
            devices: [{ type: mod, id: "bad" }],
            timeoutMs: 30_000,
            onStarted: () => started = true,
          });
          assertEquals(out.status, EXIT.USAGE, out.message);
          assertEquals(out.end, "remote-refused");
          assertStringIncludes(out.message, `${mod}: ${problem}`);
          assert(!started, "QEMU was never started");
          assertEquals(out.qemu, null);
        });
      }
    });
  },
);

qemuTest(
  "launch: a module that never finishes importing is --timeout, exit 6, nothing left running",
  async () => {
    const { mod, stderr } = await timedOutServing(
      "spin.ts",
      `while (true) { /* never done importing */ }\nexport default () => ({});\n`,
    );
    // The remote's watchdog answers the SIGTERM its stuck thread cannot.
    assertMatch(
      stderr,
      /^(iohub remote: SIGTERM: device code( of spin0)? has not returned for [\d.]+ s; exiting without closing the channels\n)?iohub: timed out after 2 s before the remote was ready \(loading its devices\); stopped the remote, QEMU was not started\n$/,
    );
    assertEquals(processesWith(mod), []);
  },
);

qemuTest(
  "launch: a module's top level runs once (in the remote alone)",
  async () => {
    const { stderr } = await timedOutServing(
      "noisy.ts",
      `console.error("noisy: module loaded");\n${MODEL(4096, 0x1af4)}`,
      ",id=noisy",
    );
    assertEquals(stderr.split("noisy: module loaded").length, 2, stderr);
    assertStringIncludes(stderr, "noisy: peer closed the connection");
  },
);

Deno.test("launch: the remote reads every device type back from its command line", () => {
  const commands = (type: string, id = "a"): { remote: string[] } =>
    launchCommands({ devices: [{ type, id }] }, [3], [4], 5);
  // Commas in a module path are doubled, so that even a part that looks
  // like KEY=VALUE stays in the path.
  for (const type of ["./mod dir,x/e,cho.ts", "./a,b=c/x.ts", "./t,", ",,"]) {
    const { remote } = commands(type);
    const value = remote[remote.indexOf("--device") + 1];
    assertEquals(splitDeviceValue(value).type, type, value);
  }
  assertThrows(() => commands(""), RangeError, "bad device");
  assertThrows(() => commands("testdev", "1x"), RangeError, "bad device");
});
