import { assertEquals } from "@std/assert";
import { withTempDir } from "../../temp_dir.ts";

const LOAD = new URL("../../../lib/pci/devices/load.ts", import.meta.url).href;

// In a process of its own: the pending import outlives the failed load, and
// a test runner would report it when its module ends.
Deno.test("device types: a module whose top-level await never settles fails to load, naming it", async () => {
  await withTempDir("iohub-load-", async (dir) => {
    const path = `${dir}/stuck.ts`;
    Deno.writeTextFileSync(
      path,
      "await new Promise(() => {});\nexport default () => ({});\n",
    );
    const script = `
      import { resolveDeviceType } from ${JSON.stringify(LOAD)};
      try {
        await resolveDeviceType(${JSON.stringify(path)}, 300);
      } catch (e) {
        console.log(e.name + ": " + e.message);
      }
      Deno.exit(0);`;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", "--quiet", "--no-check", script],
      stdin: "null",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    assertEquals(
      new TextDecoder().decode(out.stdout).trim(),
      `DeviceTypeError: ${path}: the module did not finish loading within 0.3 s (a top-level await that never settles?)`,
    );
  });
});
