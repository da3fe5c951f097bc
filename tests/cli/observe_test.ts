// Watching a device while a guest driver runs: `--trace FILE` writes one
// JSON line per message and INTx event, `--control PATH` answers
// `iohub stats PATH` with live counters; on the remote and during the demo.

import {
  assert,
  assertEquals,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { closeFd, EventFd, listenUnix } from "../../ffi/mod.ts";
import { readControl } from "../../lib/remote/control.ts";
import { formatStats } from "../../lib/cli/stats.ts";
import type { RemoteState } from "../../lib/remote/remote.ts";
import { spawnDevices } from "../remote/remote_process.ts";
import { haveBinutils, haveQemu } from "../requirements.ts";
import { withTempDir } from "../temp_dir.ts";
import { iohub, MAIN } from "./cli_run.ts";

const BAR0 = 0xfebf0000n;

Deno.test("remote: --trace records every message and INTx event, --control answers iohub stats", async () => {
  await withTempDir("iohub-observe-", async (dir) => {
    const trace = `${dir}/trace.jsonl`;
    const control = `${dir}/control.sock`;
    await using r = spawnDevices(
      ["testdev,id=watched", "testdev,id=other"],
      ["--trace", trace, "--control", control],
    );
    const [c] = r.clients;
    using irq = new EventFd();
    using rs = new EventFd();
    c.cfgWrite(0x10, Number(BAR0));
    c.cfgWrite(0x04, 0x2, 2);
    c.setIrqfd(irq.fd, rs.fd);
    for (let i = 0; i < 20; i++) c.barRead(BAR0);
    c.barWrite(BAR0 + 0x0cn, 1n); // IRQ_RAISE
    rs.signal(); // EOI while the level is high: re-asserted
    c.barrier();
    c.barWrite(BAR0 + 0x10n, 1n); // IRQ_ACK
    c.barRead(0xfec00000n); // refused: hits no BAR
    c.barrier();

    const json = await iohub("stats", control, "--json");
    assertEquals(json.code, 0, json.stderr);
    const state = JSON.parse(json.stdout) as RemoteState;
    const [watched, other] = state.devices;
    // The SET_IRQFD pair is the remote's to keep: nothing waits to close.
    assertEquals(state.peerFdCloses, { pending: 0, dropped: 0 });
    assertEquals(watched.id, "watched");
    assertEquals(watched.type, "testdev");
    assertEquals(watched.channel, "connected");
    assertEquals(watched.requests.BAR_READ, 21);
    assertEquals(watched.requests.BAR_WRITE, 2);
    assertEquals(watched.requests.PCI_CFGWRITE, 2);
    assertEquals(watched.requests.PCI_CFGREAD, 4);
    assertEquals(watched.refusals, 1);
    assertEquals(
      [watched.intx.asserts, watched.intx.deasserts, watched.intx.reasserts],
      [1, 1, 1],
    );
    assert(
      watched.latencyUs.p50 > 0 &&
        watched.latencyUs.p99 >= watched.latencyUs.p50,
    );
    assertEquals(other.requests, {});
    const table = await iohub("stats", control);
    assertEquals(table.code, 0, table.stderr);
    assertStringIncludes(table.stdout, "resamples");
    assert(
      /^watched\s+testdev\s+connected\s+4\s+2\s+21\s+2\s+/m.test(table.stdout),
      table.stdout,
    );

    const { code, stderr } = await r.finish();
    assertEquals(code, 0, stderr);
    const recs = Deno.readTextFileSync(trace).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    const mine = recs.filter((x) => x.dev === "watched");
    assertEquals(mine[0].event, "open");
    assertEquals(mine.at(-1).event, "close");
    const messages = mine.filter((x) => x.cmd !== undefined);
    assertEquals(messages.length, 2 + 1 + 21 + 2 + 4);
    assertEquals(messages[0], {
      ...messages[0],
      cmd: "PCI_CFGWRITE",
      addr: "0x10",
      size: 4,
      value: "0xfebf0000",
    });
    const refused = messages.filter((x) => x.refused === true);
    assertEquals(
      refused.map((x) => x.addr),
      ["0xfec00000"],
      "the refusal is marked",
    );
    const read = messages.find((x) => x.cmd === "BAR_READ")!;
    assertEquals([read.addr, read.size, read.space, read.value], [
      "0xfebf0000",
      4,
      "memory",
      "0x10b10001",
    ]);
    // Where it landed in the device, so nobody subtracts BAR bases.
    assertEquals([read.bar, read.offset], [0, "0x0"]);
    const ack = messages.filter((x) => x.cmd === "BAR_WRITE").at(-1)!;
    assertEquals([ack.bar, ack.offset], [0, "0x10"]);
    assertEquals(refused[0].bar, undefined, "a refused access hit no BAR");
    assert(typeof read.t === "number" && typeof read.us === "number");
    const events = mine.filter((x) =>
      x.event === "intx" || x.event === "resample"
    )
      .map((x) =>
        x.event === "intx" ? `intx${x.level}` : `resample:${x.reassert}`
      );
    assertEquals(events, ["intx1", "resample:true", "intx0"]);
    assert(!Deno.statSync(dir).isFile);
    let gone = false;
    try {
      Deno.statSync(control);
    } catch {
      gone = true;
    }
    assert(gone, "the control socket is removed");
  });
});

Deno.test("stats: nothing listening is one line, exit 1", async () => {
  const r = await iohub("stats", "/nonexistent/iohub.sock");
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assertStringIncludes(r.stderr, "nothing answers on /nonexistent/iohub.sock");
});

Deno.test("remote: --trace to a FIFO nobody reads yet, or a socket, is one line, exit 2", async () => {
  await withTempDir("iohub-trace-fifo-", async (dir) => {
    const fifo = `${dir}/fifo`;
    assert(
      (await new Deno.Command("mkfifo", { args: [fifo] }).output()).success,
    );
    const r = await iohub(
      "remote",
      "--device",
      `testdev,socket=${dir}/s.sock`,
      "--trace",
      fifo,
    );
    assertEquals(r.code, 2);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, "ENXIO");
    assertStringIncludes(r.stderr, "a FIFO needs its reader first");
    // A socket refuses the same way, for another reason.
    const sock = listenUnix(`${dir}/t.sock`);
    try {
      const s = await iohub(
        "remote",
        "--device",
        `testdev,socket=${dir}/s.sock`,
        "--trace",
        `${dir}/t.sock`,
      );
      assertEquals(s.code, 2);
      assertStringIncludes(s.stderr, "a socket cannot be opened as a file");
    } finally {
      closeFd(sock);
    }
  });
});

Deno.test({
  name: "demo: --trace and --control work while the guest runs",
  ignore: !haveQemu() || !haveBinutils(),
  async fn(): Promise<void> {
    await withTempDir("iohub-demo-observe-", async (dir) => {
      const trace = `${dir}/trace.jsonl`;
      const control = `${dir}/control.sock`;
      await using demo = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          MAIN,
          "demo",
          "--accel",
          "tcg",
          "--trace",
          trace,
          "--control",
          control,
        ],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let state: RemoteState | null = null;
      for (let i = 0; i < 300 && state === null; i++) {
        const s = await iohub("stats", control, "--json");
        if (s.code === 0) state = JSON.parse(s.stdout) as RemoteState;
        else await new Promise((done) => setTimeout(done, 50));
      }
      const out = await demo.output();
      assert(state !== null, "iohub stats answered during the demo");
      assertEquals(state.devices[0].id, "testdev0");
      assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
      const recs = Deno.readTextFileSync(trace).trim().split("\n").map((l) =>
        JSON.parse(l)
      );
      assert(
        recs.some((x) => x.cmd === "BAR_READ"),
        "the guest's BAR reads are traced",
      );
      assert(recs.some((x) => x.cmd === "DEVICE_RESET"), "the reset is traced");
    });
  },
});

Deno.test("stats: a control socket that accepts but never answers is one clear line, exit 1", async () => {
  await withTempDir("iohub-observe-", async (dir) => {
    const path = `${dir}/silent.sock`;
    // Listening, never accepting: the kernel completes the connection, as
    // for a remote whose thread is stuck in device code.
    const fd = listenUnix(path);
    try {
      await assertRejects(
        () => readControl(path, 200),
        Error,
        "connected, but no answer within 0.2 s",
      );
    } finally {
      closeFd(fd);
    }
  });
});

Deno.test("stats: closes of peer fds that wait are shown in the header", () => {
  const state: RemoteState = {
    pid: 7,
    uptimeS: 1,
    pollUs: 0,
    wakeups: { direct: 0, polled: 0, synced: 0, slept: 0 },
    devices: [],
    peerFdCloses: { pending: 2, dropped: 0 },
  };
  assertStringIncludes(
    formatStats(state),
    "remote pid 7, up 1.0 s, polling window 0 us, peer fds: 2 closes pending, 0 left open",
  );
  state.peerFdCloses = { pending: 0, dropped: 0 };
  assertEquals(
    formatStats(state).split("\n")[0],
    "remote pid 7, up 1.0 s, polling window 0 us",
  );
});
