// Builds the Cockpit package into dist/: berth.js (the page, xterm.js
// bundled) and berth.css by esbuild, manifest.json and index.html copied.
// `node build.mjs` (npm run build); what packaging/build-deb and the test run.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "dist");
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
    entryPoints: [join(here, "src/berth.js")],
    bundle: true,
    minify: true,
    sourcemap: false,
    format: "iife",
    target: ["chrome100", "firefox100", "safari15"],
    outfile: join(out, "berth.js"),
    legalComments: "linked",
    logLevel: "warning",
    // Cockpit serves its fonts at ../../static/fonts: used in place.
    external: ["../../static/*"],
});
for (const f of ["manifest.json", "index.html"]) copyFileSync(join(here, f), join(out, f));
console.log(`built ${out}`);
