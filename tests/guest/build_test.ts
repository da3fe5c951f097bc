// A guest's binary is keyed by the files it includes too: an edit to a
// shared part (guest/common) must rebuild every guest that includes it.

import { assertEquals, assertNotEquals } from "@std/assert";
import { buildGuest, guestSources } from "../../lib/guest/build.ts";
import { withTempDir } from "../temp_dir.ts";

Deno.test("buildGuest: includes resolve from the source's parent folder, and their text keys the binary", async () => {
  await withTempDir("iohub-build-", async (dir) => {
    Deno.mkdirSync(`${dir}/guest/common`, { recursive: true });
    Deno.mkdirSync(`${dir}/guest/one`);
    const source = `${dir}/guest/one/one.S`;
    const part = `${dir}/guest/common/part.inc`;
    Deno.writeTextFileSync(source, '.code16\n\t.include "common/part.inc"\n');
    Deno.writeTextFileSync(part, "\thlt\n");
    assertEquals(await guestSources(source), [
      source,
      `${dir}/guest/common/part.inc`,
    ]);
    const bins = `${dir}/bins/`;
    const first = await buildGuest(source, { origin: 0x1000 }, false, bins);
    assertEquals(Deno.readFileSync(first), new Uint8Array([0xf4]));
    Deno.writeTextFileSync(part, "\tcli\n");
    const second = await buildGuest(source, { origin: 0x1000 }, false, bins);
    assertNotEquals(second, first);
    assertEquals(Deno.readFileSync(second), new Uint8Array([0xfa]));
  });
});
