// One container's panel: its properties, logs (the journal of
// CONTAINER_ID_FULL, followed), a console (berthctl exec -it in Cockpit's
// pty channel) and stats (GetContainerStats).
/* global cockpit */
import { call, el, errorText, formatBytes, formatTime } from "./api.js";
import { containerProxy } from "./containers.js";
import { openTerminal } from "./terminal.js";

let panel;
let current = null; // { id, cleanup: [fn] }
let showError = () => {};

export function initDetails(section, { error }) {
    panel = section;
    showError = error;
    for (const tab of panel.querySelectorAll("[role=tab]")) {
        tab.addEventListener("click", () => showTab(tab.dataset.tab));
    }
    panel.querySelector("#details-close").addEventListener("click", () => select(null));
}

function cleanup() {
    for (const fn of current?.cleanup || []) {
        try { fn() } catch (_) { /* already gone */ }
    }
}

// Shows container `id` (null: hides the panel). `removed` is the id of a
// container that just went: its panel closes.
export function select(id, removed) {
    if (removed !== undefined) {
        if (current?.id === removed) select(null);
        return;
    }
    cleanup();
    // A container not in the list (yet): nothing to show.
    if (id && !containerProxy(id)) id = null;
    current = id ? { id, cleanup: [] } : null;
    panel.hidden = !id;
    if (!id) return;
    panel.querySelector("#details-title").textContent = id;
    const proxy = containerProxy(id);
    const renderProps = () => renderProperties(proxy);
    proxy.addEventListener("changed", renderProps);
    current.cleanup.push(() => proxy.removeEventListener("changed", renderProps));
    renderProps();
    showTab("details");
    panel.scrollIntoView?.({ block: "nearest" });
}

function showTab(name) {
    if (!current) return;
    for (const tab of panel.querySelectorAll("[role=tab]")) {
        const on = tab.dataset.tab === name;
        tab.setAttribute("aria-selected", on);
        panel.querySelector(`#tab-${tab.dataset.tab}`).hidden = !on;
    }
    // Leaving a tab ends what it streams (journalctl -f, the exec'd shell,
    // the stats timer).
    cleanup();
    current.cleanup = [];
    const proxy = containerProxy(current.id);
    const renderProps = () => renderProperties(proxy);
    proxy.addEventListener("changed", renderProps);
    current.cleanup.push(() => proxy.removeEventListener("changed", renderProps));
    if (name === "logs") startLogs(current);
    if (name === "console") startConsole(current);
    if (name === "stats") startStats(current);
}

function renderProperties(p) {
    const dl = panel.querySelector("#tab-details dl");
    const rows = [
        ["Status", p.Status],
        ["Image", p.Image],
        ["Bundle", p.Bundle],
        ["Command", (p.Command || []).join(" ")],
        ["PID", p.Pid || ""],
        ["Unit", p.Unit],
        ["Created", formatTime(p.CreatedAt)],
        ["Started", formatTime(p.StartedAt)],
        ["Exited", p.Status === "stopped" ? `${formatTime(p.ExitedAt)}: code ${p.ExitCode}, signal ${p.ExitSignal} (${p.ExitReason})` : ""],
        ["Network", p.Network],
        ["IP address", p.IPAddress],
        ["Ports", (p.Ports || []).map(([ip, hp, cp, proto]) => `${ip || "0.0.0.0"}:${hp} → ${cp}/${proto}`).join(", ")],
        ["Labels", Object.entries(p.Labels || {}).map(([k, v]) => `${k}=${v}`).join(", ")],
    ];
    dl.replaceChildren(...rows.filter(([, v]) => v !== "" && v !== undefined && v !== null)
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))]));
}

// journalctl in Cockpit's bridge: an admin session reads as root, a limited
// one as the user (who sees the journal when in group adm or
// systemd-journal). berthd's GetLogs hands out an fd, which cockpit.dbus
// cannot carry.
function startLogs(cur) {
    const pre = panel.querySelector("#logs-output");
    pre.textContent = "";
    const follow = panel.querySelector("#logs-follow").checked;
    const argv = ["journalctl", "--no-pager", "-o", "cat", "-n", "1000",
        `CONTAINER_ID_FULL=${cur.id}`, `SYSLOG_IDENTIFIER=${cur.id}`];
    if (follow) argv.push("-f");
    // err "out": journalctl's own notes (a user outside adm/systemd-journal
    // is told why the log is empty) show in the pane.
    const proc = cockpit.spawn(argv, { superuser: "try", err: "out" });
    proc.stream(data => {
        pre.append(data);
        pre.scrollTop = pre.scrollHeight;
    });
    proc.catch(e => { if (e.problem !== "cancelled") pre.append(`\n[${errorText(e)}]\n`) });
    cur.cleanup.push(() => proc.close("cancelled"));
    const box = panel.querySelector("#logs-follow");
    const again = () => showTab("logs");
    box.addEventListener("change", again, { once: true });
    cur.cleanup.push(() => box.removeEventListener("change", again));
}

function startConsole(cur) {
    const host = panel.querySelector("#console-host");
    host.replaceChildren();
    const p = containerProxy(cur.id);
    if (p.Status !== "running") {
        host.append(el("p", { class: "note" }, `The console needs a running container (this one is ${p.Status}).`));
        return;
    }
    const cmd = panel.querySelector("#console-command").value || "sh";
    cur.cleanup.push(openTerminal(host, cur.id, cmd, showError));
}

const STAT_LABELS = {
    cpu_usage_usec: ["CPU time", v => `${(v / 1e6).toFixed(2)} s`],
    memory_current: ["Memory", formatBytes],
    memory_max: ["Memory limit", formatBytes],
    pids_current: ["Processes (pids)", String],
    processes: ["Processes", String],
    io_read_bytes: ["Read", formatBytes],
    io_write_bytes: ["Written", formatBytes],
};

// GetContainerStats is a snapshot of the cgroup: the tab refreshes it every
// 2 s while open (the list itself needs no polling).
function startStats(cur) {
    const dl = panel.querySelector("#tab-stats dl");
    const once = () => call("GetContainerStats", [cur.id], "s")
        .then(([stats]) => {
            dl.replaceChildren(...Object.entries(stats)
                .filter(([k]) => !k.endsWith("_reason"))
                .flatMap(([k, v]) => {
                    const [label, fmt] = STAT_LABELS[k] || [k, String];
                    const val = v.v === "unavailable"
                        ? `unavailable (${stats[`${k}_reason`]?.v || "no reason given"})`
                        : fmt(v.v);
                    return [el("dt", {}, label), el("dd", { "data-stat": k }, val)];
                }));
        })
        .catch(e => dl.replaceChildren(el("p", { class: "note" }, errorText(e))));
    once();
    const timer = setInterval(once, 2000);
    cur.cleanup.push(() => clearInterval(timer));
}
