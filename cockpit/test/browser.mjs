// The browser half of tests/cockpit.rs: runs inside the test's systemd box
// (its network namespace: cockpit-ws on 127.0.0.1) and drives Debian's
// Chromium through Cockpit's login, superuser dialog and berth's page.
//
// Environment: URL (cockpit-ws), REGISTRY (host:port of the loopback
// registry holding bb:1), SHOTS (a directory for the screenshots, or
// empty), CHROMIUM (the browser binary). Exits non-zero on the first failed
// step, naming it.
import { chromium } from "playwright-core";
import { execFileSync } from "node:child_process";

const URL = process.env.URL;
const REGISTRY = process.env.REGISTRY;
const SHOTS = process.env.SHOTS || "";
const t0 = Date.now();

function log(msg) {
    console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}`);
}

function busctl(...args) {
    // "--": arguments of a call may start with a dash (sh -c).
    return execFileSync("busctl", ["--json=short", "--", ...args], { encoding: "utf8" });
}

function berthStatus(id) {
    const path = JSON.parse(busctl("call", "io.berth.Berth1", "/io/berth/Berth1", "io.berth.Berth1.Manager", "GetContainer", "s", id)).data[0];
    return JSON.parse(busctl("get-property", "io.berth.Berth1", path, "io.berth.Berth1.Container", "Status")).data;
}

async function shot(page, name) {
    if (!SHOTS) return;
    await page.screenshot({ path: `${SHOTS}/${name}.png` });
    log(`screenshot ${name}.png`);
}

function check(cond, what) {
    if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/lib/chromium/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// The page of the step that failed gets a screenshot in FAILSHOT.
let current = null;

async function login(user, password) {
    // A fresh context: its own cookies and storage (a fresh profile).
    const context = await browser.newContext({ viewport: { width: 1280, height: 760 } });
    const page = await context.newPage();
    current = page;
    page.on("dialog", d => d.accept());
    await page.goto(`${URL}/berth`);
    await page.fill("#login-user-input", user);
    await page.fill("#login-password-input", password);
    await page.click("#login-button");
    const frame = page.frameLocator("iframe[name='cockpit1:localhost/berth']");
    await frame.locator("body:not([data-loading])").waitFor();
    log(`logged in as ${user}`);
    return { context, page, frame };
}

async function main() {
    // --- an administrator: Cockpit's superuser dialog, then berth's page.
    const { context, page, frame } = await login("admin", "admin-pw");
    await frame.locator("#access-limited").waitFor();
    await page.getByRole("button", { name: "Limited access" }).click();
    await page.locator("input[type=password]").fill("admin-pw");
    await page.getByRole("button", { name: "Authenticate" }).click();
    await page.getByText("Administrative access", { exact: true }).waitFor();
    await frame.locator("#access-admin").waitFor();
    log("administrative access on");

    // A container created with busctl appears, running (ContainerNew and
    // PropertiesChanged: the page does not poll).
    busctl("call", "io.berth.Berth1", "/io/berth/Berth1", "io.berth.Berth1.Manager", "CreateContainer", "ssa{sv}",
        "web", "", "2", "image", "s", "local/bb:1",
        "args", "as", "3", "sh", "-c", "trap 'exit 0' TERM; echo hello-from-web; while true; do sleep 1; done");
    busctl("call", "io.berth.Berth1", "/io/berth/Berth1", "io.berth.Berth1.Manager", "StartContainer", "s", "web");
    const web = frame.locator("tr[data-id=web]");
    await web.locator(".status-running").waitFor();
    log("web appeared, running");
    await shot(page, "containers");

    // Logs: the journal of CONTAINER_ID_FULL=web.
    await web.getByRole("button", { name: "Details of web" }).click();
    await frame.locator("#details-title", { hasText: "web" }).waitFor();
    await frame.locator("#details [data-tab=logs]").click();
    await frame.locator("#logs-output", { hasText: "hello-from-web" }).waitFor();
    log("logs show the container's output");
    await shot(page, "logs");

    // The console: berthctl exec -it web sh in a pty; `echo` round trip.
    await frame.locator("#details [data-tab=console]").click();
    await frame.locator("#console-host .xterm").waitFor();
    await frame.locator("#console-host .xterm-rows", { hasText: "#" }).waitFor();
    await frame.locator("#console-host .xterm-helper-textarea").focus();
    await page.keyboard.type("echo console-$((6*7))\n");
    await frame.locator("#console-host .xterm-rows", { hasText: "console-42" }).waitFor();
    log("console: echo ran in the container");
    await shot(page, "console");

    // Stats from GetContainerStats; reached from the keyboard (arrow keys
    // move along the tabs).
    await frame.locator("#details [data-tab=console]").focus();
    await page.keyboard.press("ArrowRight");
    await frame.locator("#tab-stats dd[data-stat=pids_current]").waitFor();
    log("stats shown");
    await shot(page, "stats");

    // The unit's link opens it in Cockpit's Services page.
    await web.getByRole("link", { name: "berth-web.scope" }).click();
    await page.waitForURL(/\/system\/services#\/berth-web\.scope$/);
    log(`unit link: ${page.url()}`);
    await page.goBack();
    await web.waitFor();

    // Stop from the page: berthd's state changes, and the row follows.
    await web.locator("[data-action=stop]").click();
    await web.locator(".status-stopped").waitFor();
    check(berthStatus("web") === "stopped", `berthd says web is ${berthStatus("web")}`);
    log("stopped from the page; berthd agrees");

    // berthd's own error message, shown: a name berthd refuses.
    await frame.locator("#pages [data-page=create]").click();
    await frame.locator("#create-image").fill("local/bb:1");
    await frame.locator("#create-name").fill("bad/name");
    await frame.locator("#create-form button[type=submit]").click();
    await frame.locator("#error:not([hidden])", { hasText: "InvalidArgument" }).waitFor();
    log(`berthd's error shown: ${await frame.locator("#error-text").innerText()}`);
    await frame.locator("#error-close").click();

    // The create form: options from the table → CreateContainer, started.
    await frame.locator("#create-name").fill("made-here");
    await frame.locator("#create-args").fill("sh -c 'echo made $FOO; sleep 600'");
    await frame.locator("#create-env").fill("FOO=bar");
    await frame.locator("#create-labels").fill("made.by=cockpit");
    await frame.locator("#create-image").scrollIntoViewIfNeeded();
    await shot(page, "create");
    await frame.locator("#create-form button[type=submit]").click();
    const made = frame.locator("tr[data-id=made-here]");
    await made.locator(".status-running").waitFor();
    check(berthStatus("made-here") === "running", "made-here runs in berthd");
    await made.getByRole("button", { name: "Details of made-here" }).click();
    await frame.locator("#tab-details dd", { hasText: "made.by=cockpit" }).waitFor();
    await frame.locator("#details [data-tab=logs]").click();
    await frame.locator("#logs-output", { hasText: "made bar" }).waitFor();
    log("created and started from the form");
    // Pause and resume (FreezeUnit/ThawUnit of its scope).
    await made.locator("[data-action=pause]").click();
    await made.locator(".status-paused").waitFor();
    check(berthStatus("made-here") === "paused", "made-here is paused in berthd");
    await made.locator("[data-action=resume]").click();
    await made.locator(".status-running").waitFor();
    log("paused and resumed from the page");

    // Images: pull from the loopback registry with the progress bar.
    await frame.locator("#pages [data-page=images]").click();
    await frame.locator("#pull-reference").fill(`${REGISTRY}/bb:1`);
    await frame.locator("#pull-form button[type=submit]").click();
    await frame.locator("#pull-progress-label", { hasText: "Pulled" }).waitFor();
    const bar = await frame.locator("#pull-progress").evaluate(b => [b.hidden, b.value, b.max]);
    check(!bar[0] && bar[2] > 1 && bar[1] === bar[2], `progress bar full after the pull: ${bar}`);
    await frame.locator(`tr[data-image="${REGISTRY}/bb:1"]`).waitFor();
    log(`pulled, progress ${bar[1]}/${bar[2]} bytes`);
    await shot(page, "images");
    // Remove it, then prune what nothing references any more.
    await frame.locator(`tr[data-image="${REGISTRY}/bb:1"] [data-action=remove]`).click();
    await frame.locator(`tr[data-image="${REGISTRY}/bb:1"]`).waitFor({ state: "detached" });
    check(!busctl("call", "io.berth.Berth1", "/io/berth/Berth1", "io.berth.Berth1.Images", "ListImages").includes(`${REGISTRY}/bb:1`),
        "the removed image is gone from berthd's store");
    await frame.locator("#prune").click();
    await frame.locator("#images-status", { hasText: "Pruned" }).waitFor();
    log(`removed the image; ${await frame.locator("#images-status").innerText()}`);

    // Delete from the page.
    await frame.locator("#pages [data-page=containers]").click();
    await made.locator("[data-action=delete]").click();
    await made.waitFor({ state: "detached" });
    check(!busctl("call", "io.berth.Berth1", "/io/berth/Berth1", "io.berth.Berth1.Manager", "ListContainers").includes("made-here"),
        "made-here is gone from berthd");
    log("deleted from the page");

    // The dark theme Cockpit's shell chose.
    await page.evaluate(() => {
        localStorage.setItem("shell:style", "dark");
        for (const f of document.querySelectorAll("iframe")) {
            f.contentWindow.dispatchEvent(new CustomEvent("cockpit-style", { detail: { style: "dark" } }));
        }
    });
    await frame.locator("html.pf-theme-dark").waitFor();
    await shot(page, "dark");
    await context.close();

    // --- a user without administrative rights: read-only, no mutating button.
    const viewer = await login("viewer", "viewer-pw");
    await viewer.frame.locator("#access-limited").waitFor();
    await viewer.frame.locator("tr[data-id=web]").waitFor();
    const visible = await viewer.frame.locator("[data-action], #pull-form, #import-form, [data-page=create], [data-tab=console]")
        .evaluateAll(els => els.filter(e => e.offsetParent !== null).map(e => e.dataset.action || e.id || e.dataset.page || e.dataset.tab));
    check(visible.length === 0, `a limited session sees mutating controls: ${visible}`);
    log("viewer: read-only, no mutating controls");
    await shot(viewer.page, "readonly");
    await viewer.context.close();
}

try {
    await main();
    log("all steps passed");
} catch (e) {
    console.error(`FAILED: ${e.message}`);
    process.exitCode = 1;
    if (process.env.FAILSHOT && current) {
        await current.screenshot({ path: process.env.FAILSHOT }).catch(() => {});
        console.error(`screenshot of the failure: ${process.env.FAILSHOT}`);
    }
} finally {
    await browser.close();
}
