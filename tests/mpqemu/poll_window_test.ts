import { assertEquals } from "@std/assert";
import { PollWindow } from "../../lib/mpqemu/poll_window.ts";

Deno.test("poll window: grows while polling would catch the peer, outlasts a late answer, shrinks to nothing when the peer goes quiet", () => {
  const w = new PollWindow({ maxNs: 32_000 });
  assertEquals(w.ns, 0, "an idle remote starts without polling");
  const seen: number[] = [];
  for (let i = 0; i < 5; i++) {
    w.update(20_000); // the peer answers after 20 us
    seen.push(w.ns);
  }
  assertEquals(seen, [4_000, 8_000, 16_000, 32_000, 32_000]);
  w.update(10_000);
  assertEquals(w.ns, 32_000, "caught while polling: kept");
  w.update(5_000_000);
  w.update(60_000);
  assertEquals(w.ns, 32_000, "two late answers in a row keep it");
  w.update(20_000);
  w.update(5_000_000);
  w.update(5_000_000);
  assertEquals(w.ns, 32_000, "an answer in time starts the count again");
  w.update(5_000_000);
  assertEquals(w.ns, 16_000, "the third late one in a row halves it");
  const quiet: number[] = [];
  for (let i = 0; i < 5; i++) {
    w.update(5_000_000);
    quiet.push(w.ns);
  }
  assertEquals(
    quiet,
    [8_000, 4_000, 2_000, 1_000, 0],
    "a peer that stays quiet stops the polling",
  );
  w.update(20_000);
  assertEquals(w.ns, 4_000, "and a busy one starts it again");
});

Deno.test("poll window: a fixed window never adapts; 0 never polls", () => {
  const fixed = new PollWindow({ fixedNs: 50_000 });
  fixed.update(10_000_000);
  fixed.update(1_000);
  assertEquals(fixed.ns, 50_000);
  const off = new PollWindow({ fixedNs: 0 });
  off.update(1_000);
  assertEquals(off.ns, 0);
});

Deno.test("poll window: a peer sending bursts keeps it, one window per burst", () => {
  const w = new PollWindow({ maxNs: 32_000 });
  for (let i = 0; i < 4; i++) w.update(20_000);
  for (let burst = 0; burst < 10; burst++) {
    w.update(1_000_000); // the burst's first request, after a pause
    w.update(15_000); // its second, caught by polling
  }
  assertEquals(w.ns, 32_000);
});
