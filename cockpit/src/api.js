// berthd's D-Bus API as the page uses it: one system-bus client, calls that
// reject with berthd's own message, and the Cockpit superuser state.
//
// `superuser: "try"`: while the session has administrative access the calls
// go through Cockpit's root bridge (berthd sees uid 0), else as the logged-in
// user (read-only calls succeed; berthd refuses mutating ones by polkit).
/* global cockpit */

export const BUS_NAME = "io.berth.Berth1";
export const ROOT = "/io/berth/Berth1";
export const MANAGER = "io.berth.Berth1.Manager";
export const CONTAINER = "io.berth.Berth1.Container";
export const IMAGES = "io.berth.Berth1.Images";

// Signals and properties: open to everyone, one client for the page's life.
export const client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });

// Method calls: a channel's superuser choice is made when it opens, so the
// client for calls is opened again whenever the access level changes (as
// cockpit-podman does) — else a session that turned administrative access on
// would still call as the user.
let caller = client;
function reopenCaller() {
    if (caller !== client) caller.close();
    caller = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
}

// The text berthd sent with its error (io.berth.Berth1.Error.*), prefixed by
// the error's short name so "NotFound: container x" reads as berthd meant.
export function errorText(e) {
    if (!e) return "unknown error";
    const name = (e.name || "").replace(/^io\.berth\.Berth1\.Error\./, "");
    const msg = e.message || e.problem || String(e);
    return name && !name.includes(".") ? `${name}: ${msg}` : msg;
}

export function call(method, args, signature, iface = MANAGER, path = ROOT, options = {}) {
    return caller.call(path, iface, method, args, { type: signature, ...options });
}

// a{sv} for cockpit.dbus: every value wrapped as {t: type, v: value}.
export function variants(entries) {
    const out = {};
    for (const [key, [t, v]] of Object.entries(entries)) out[key] = { t, v };
    return out;
}

// Cockpit's superuser state: Current is the superuser bridge in use
// ("sudo", "pkexec", …) when the session has administrative access, "none"
// for limited access, "init" while not known yet. `onChange(admin, state)`
// runs at once and on every change.
export function watchSuperuser(onChange) {
    const internal = cockpit.dbus(null, { bus: "internal" });
    const proxy = internal.proxy("cockpit.Superuser", "/superuser");
    let last = null;
    const update = () => {
        const state = proxy.valid ? proxy.Current : "init";
        if (state === last) return;
        if (last !== null) reopenCaller();
        last = state;
        onChange(state !== "none" && state !== "init", state);
    };
    proxy.addEventListener("changed", update);
    proxy.wait(update);
    update();
    return proxy;
}

// µs since the epoch → local date and time ("" for 0).
export function formatTime(usec) {
    const n = Number(usec);
    if (!n) return "";
    return new Date(n / 1000).toLocaleString();
}

export function formatBytes(n) {
    n = Number(n);
    if (!Number.isFinite(n)) return String(n);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

// A small element builder: el("button", {class: "x", onclick}, "text", child…).
export function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else if (k === "class") e.className = v;
        else if (v === true) e.setAttribute(k, "");
        else e.setAttribute(k, v);
    }
    for (const c of children.flat()) {
        if (c === undefined || c === null || c === false) continue;
        e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
}
