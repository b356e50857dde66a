// The Containers tab: a live list (ContainerNew/Removed/Exited and each
// object's PropertiesChanged through a Cockpit proxy: no polling) and the
// per-container actions, each one berthd method.
/* global cockpit */
import { client, call, CONTAINER, MANAGER, ROOT, el, errorText, formatTime } from "./api.js";

const rows = new Map(); // id → { proxy, tr }
let onSelect = () => {};
let showError = () => {};
let tbody;

export function initContainers(table, { select, error }) {
    tbody = table.querySelector("tbody");
    onSelect = select;
    showError = error;
    client.subscribe({ interface: MANAGER, member: "ContainerNew" }, (_p, _i, _s, [id, path]) => add(id, path));
    client.subscribe({ interface: MANAGER, member: "ContainerRemoved" }, (_p, _i, _s, [id]) => remove(id));
    // The Exited signal carries the code before PropertiesChanged lands: the
    // row shows it at once.
    client.subscribe({ interface: MANAGER, member: "ContainerExited" }, (_p, _i, _s, [id]) => {
        const r = rows.get(id);
        if (r) render(id);
    });
    refresh();
    // berthd restarted (a new owner of its name): its objects are new.
    client.addEventListener("owner", (_ev, owner) => { if (owner) refresh() });
}

export function refresh() {
    call("ListContainers", [], "")
        .then(([list]) => {
            const seen = new Set();
            for (const [id, , path] of list) { seen.add(id); add(id, path) }
            for (const id of [...rows.keys()]) if (!seen.has(id)) remove(id);
            updateEmpty();
        })
        .catch(e => showError(`Listing containers: ${errorText(e)}`));
}

export function containerProxy(id) {
    return rows.get(id)?.proxy;
}

function add(id, path) {
    if (rows.has(id)) return;
    const proxy = client.proxy(CONTAINER, path);
    const tr = el("tr", { "data-id": id });
    rows.set(id, { proxy, tr });
    proxy.addEventListener("changed", () => render(id));
    proxy.wait(() => render(id));
    insertSorted(id, tr);
    render(id);
    updateEmpty();
}

function remove(id) {
    const r = rows.get(id);
    if (!r) return;
    r.tr.remove();
    rows.delete(id);
    updateEmpty();
    onSelect(null, id);
}

function insertSorted(id, tr) {
    const after = [...tbody.querySelectorAll("tr[data-id]")].find(t => t.dataset.id > id);
    tbody.insertBefore(tr, after || null);
}

function updateEmpty() {
    const empty = tbody.querySelector("tr.empty");
    if (empty) empty.hidden = rows.size > 0;
}

function exitText(p) {
    if (p.Status !== "stopped") return "";
    const sig = p.ExitSignal ? ` (signal ${p.ExitSignal})` : "";
    const reason = p.ExitReason && p.ExitReason !== "exited" ? ` — ${p.ExitReason}` : "";
    return `${p.ExitCode}${sig} at ${formatTime(p.ExitedAt)}${reason}`;
}

function render(id) {
    const r = rows.get(id);
    if (!r) return;
    const p = r.proxy;
    const unit = p.Unit || "";
    r.tr.replaceChildren(
        el("td", { "data-label": "Name" },
           el("button", { class: "link", onclick: () => onSelect(id), "aria-label": `Details of ${id}` }, id)),
        el("td", { "data-label": "Image" }, p.Image || p.Bundle || ""),
        el("td", { "data-label": "Status" }, el("span", { class: `status status-${p.Status}` }, p.Status || "…")),
        el("td", { "data-label": "PID" }, p.Pid ? String(p.Pid) : ""),
        el("td", { "data-label": "Unit" },
           unit ? el("a", { href: "#", onclick: ev => { ev.preventDefault(); cockpit.jump(`/system/services#/${encodeURIComponent(unit)}`) } }, unit) : ""),
        el("td", { "data-label": "Created" }, formatTime(p.CreatedAt)),
        el("td", { "data-label": "Started" }, formatTime(p.StartedAt)),
        el("td", { "data-label": "Exit" }, exitText(p)),
        el("td", { class: "actions admin-only" }, actionButtons(id, p)),
    );
}

// The verbs berthd allows in each state (src/lifecycle.rs); the buttons
// follow it so a click is never a predictable refusal.
function actionButtons(id, p) {
    const s = p.Status;
    const b = (label, fn, cls = "") =>
        el("button", { class: `btn ${cls}`, "data-action": label.toLowerCase(), onclick: () => run(id, label, fn) }, label);
    const out = [];
    if (s === "created") out.push(b("Start", () => call("StartContainer", [id], "s")));
    if (s === "running") {
        out.push(b("Stop", () => stop(id, stopTimeout())));
        out.push(b("Kill", () => call("KillContainer", [id, "all", 9], "ssi")));
        out.push(b("Pause", () => call("PauseContainer", [id], "s")));
    }
    if (s === "paused") out.push(b("Resume", () => call("ResumeContainer", [id], "s")));
    // Restart is a unit's (see restart below): offered where there is one.
    if ((s === "running" || s === "stopped") && p.Labels?.["io.berth.unit"]) out.push(b("Restart", () => restart(id, p)));
    out.push(b("Delete", () => confirmDelete(id, s), "danger"));
    return out;
}

function stopTimeout() {
    const v = Number(document.getElementById("stop-timeout")?.value);
    return Number.isFinite(v) && v >= 0 ? v : 10;
}

function run(id, label, fn) {
    Promise.resolve().then(fn).catch(e => showError(`${label} ${id}: ${errorText(e)}`));
}

// SIGTERM to the init, then SIGKILL to every process of the scope when it
// has not stopped within `seconds` (podman stop's order and default).
export function stop(id, seconds) {
    const proxy = rows.get(id)?.proxy;
    return call("KillContainer", [id, "init", 15], "ssi").then(() => new Promise((resolve, reject) => {
        const done = () => {
            if (proxy && proxy.Status !== "stopped") return;
            clearTimeout(timer);
            proxy?.removeEventListener("changed", done);
            resolve();
        };
        const timer = setTimeout(() => {
            proxy?.removeEventListener("changed", done);
            call("KillContainer", [id, "all", 9], "ssi").then(resolve, reject);
        }, seconds * 1000);
        proxy?.addEventListener("changed", done);
        done();
    }));
}

// berthd starts a container once (created → running, as runc); what
// restarts is the systemd unit that runs it (berth@ units and the generator
// label their containers io.berth.unit).
function restart(id, p) {
    const unit = p.Labels?.["io.berth.unit"];
    if (!unit) {
        return Promise.reject(new Error(
            "berthd starts a container once; only a container run by a systemd unit (label io.berth.unit) restarts, through its unit"));
    }
    const systemd = cockpit.dbus("org.freedesktop.systemd1", { bus: "system", superuser: "require" });
    return systemd.call("/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "RestartUnit",
                        [unit, "replace"], { type: "ss" });
}

function confirmDelete(id, status) {
    const force = status === "running" || status === "paused";
    const question = force
        ? `Delete ${id}? It is ${status}: it will be killed first.`
        : `Delete ${id}?`;
    if (!window.confirm(question)) return Promise.resolve();
    return call("DeleteContainer", [id, force], "sb");
}

export { ROOT };
