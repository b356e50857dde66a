// Builds the Cockpit package into dist/ (or the directory given as the
// first argument): berth.js (the page, xterm.js bundled) and berth.css by
// esbuild, manifest.json and index.html copied. `node build.mjs [OUT]`
// (npm run build); what packaging/build-deb and tests/cockpit.rs run.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = process.argv[2] ? resolve(process.argv[2]) : join(here, "dist");
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
