// Where guests are looked up and written: build/guests/ from source; in a
// compiled binary, prebuilt programs only and images in the user's cache.

import { assertEquals, assertRejects } from "@std/assert";
import { buildGuest, guestBinaryPath } from "../../lib/guest/build.ts";
import { BUILD_DIR, imageDir } from "../../lib/guest/dirs.ts";
import { withTempDir } from "../temp_dir.ts";

Deno.test("imageDir: build/guests from source, the user's cache when compiled", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assertEquals(imageDir(false, env({ HOME: "/home/u" })), BUILD_DIR);
  assertEquals(
    imageDir(true, env({ HOME: "/home/u" })),
    "/home/u/.cache/iohub/guests/",
  );
  assertEquals(
    imageDir(true, env({ HOME: "/home/u", XDG_CACHE_HOME: "/c" })),
    "/c/iohub/guests/",
  );
});

Deno.test("buildGuest, compiled: finds a prebuilt program, never runs binutils", async () => {
  await withTempDir("iohub-dirs-", async (dir) => {
    const source = `${dir}/tiny.S`;
    Deno.writeTextFileSync(source, ".code16\nhlt\n");
    const bins = `${dir}/guests/`;
    await assertRejects(
      () => buildGuest(source, { origin: 0x1000 }, true, bins),
      Error,
      "not among the guests this compiled iohub carries (rebuild it with 'deno task compile')",
    );
    // Nothing was built or even prepared: the embedded build/ is read-only.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["tiny.S"]);
    Deno.mkdirSync(bins);
    const prebuilt = await guestBinaryPath(source, { origin: 0x1000 }, bins);
    Deno.writeFileSync(prebuilt, new Uint8Array([0xf4]));
    assertEquals(
      await buildGuest(source, { origin: 0x1000 }, true, bins),
      prebuilt,
    );
    // Another origin is another program, which this "binary" lacks.
    await assertRejects(
      () => buildGuest(source, { origin: 0x7c00 }, true, bins),
      Error,
      "not among the guests",
    );
  });
});
