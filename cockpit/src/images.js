// The Images tab: the store's images (ListImages), pull with PullProgress as
// a progress bar, import of an archive or OCI layout on the host, remove,
// prune.
import { client, call, IMAGES, el, errorText, formatBytes, formatTime, variants } from "./api.js";

let tbody;
let showError = () => {};
let onChange = () => {};

export function initImages(section, { error, changed }) {
    showError = error;
    onChange = changed;
    tbody = section.querySelector("#images-table tbody");
    section.querySelector("#pull-form").addEventListener("submit", ev => { ev.preventDefault(); pull(section) });
    section.querySelector("#import-form").addEventListener("submit", ev => { ev.preventDefault(); importImage(section) });
    section.querySelector("#prune").addEventListener("click", () => prune(section));
    refresh();
}

// The store sends no signal when it changes; the list is read again after
// each change made here, and when the tab is shown.
export function refresh() {
    return call("ListImages", [], "", IMAGES)
        .then(([images]) => {
            const list = images.map(([name, id, digest, size, at]) => ({ name, id, digest, size, at }));
            tbody.replaceChildren(...list.map(row), el("tr", { class: "empty", hidden: list.length > 0 },
                el("td", { colspan: 5 }, "No images. Pull or import one.")));
            onChange(list);
        })
        .catch(e => showError(`Listing images: ${errorText(e)}`));
}

function row(img) {
    return el("tr", { "data-image": img.name },
        el("td", { "data-label": "Name" }, img.name),
        el("td", { "data-label": "ID" }, el("code", {}, img.id.replace(/^sha256:/, "").slice(0, 12))),
        el("td", { "data-label": "Size" }, formatBytes(img.size)),
        el("td", { "data-label": "Imported" }, formatTime(img.at)),
        el("td", { class: "actions admin-only" },
           el("button", { class: "btn danger", "data-action": "remove", onclick: () => remove(img.name) }, "Remove")));
}

function remove(name) {
    if (!window.confirm(`Remove image ${name}? Its layers stay until a prune.`)) return;
    call("RemoveImage", [name], "s", IMAGES)
        .then(refresh)
        .catch(e => showError(`Removing ${name}: ${errorText(e)}`));
}

function prune(section) {
    const status = section.querySelector("#images-status");
    call("PruneImages", [], "", IMAGES)
        .then(([blobs, bytes, snapshots]) => {
            status.textContent = `Pruned ${blobs} blobs (${formatBytes(bytes)}) and ${snapshots} snapshots.`;
            return refresh();
        })
        .catch(e => showError(`Prune: ${errorText(e)}`));
}

// PullProgress comes per blob (digest, done, total); the bar shows the sum
// over the blobs seen so far.
function pull(section) {
    const form = section.querySelector("#pull-form");
    const reference = form.querySelector("#pull-reference").value.trim();
    if (!reference) return;
    const opts = {};
    const user = form.querySelector("#pull-username").value;
    if (user) {
        opts.username = ["s", user];
        opts.password = ["s", form.querySelector("#pull-password").value];
    }
    const bar = section.querySelector("#pull-progress");
    const label = section.querySelector("#pull-progress-label");
    const blobs = new Map();
    bar.hidden = false;
    bar.removeAttribute("value");
    label.textContent = `Pulling ${reference}…`;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const sub = client.subscribe({ interface: IMAGES, member: "PullProgress" }, (_p, _i, _s, [ref, digest, done, total]) => {
        if (ref !== reference) return;
        blobs.set(digest, [Number(done), Number(total)]);
        let d = 0;
        let t = 0;
        for (const [bd, bt] of blobs.values()) { d += bd; t += bt }
        if (t > 0) {
            bar.max = t;
            bar.value = d;
            label.textContent = `Pulling ${reference}: ${formatBytes(d)} of ${formatBytes(t)}`;
        }
    });
    call("PullImage", [reference, variants(opts)], "sa{sv}", IMAGES)
        .then(([name]) => {
            label.textContent = `Pulled ${name}.`;
            if (bar.max) bar.value = bar.max;
            return refresh();
        })
        .catch(e => {
            bar.hidden = true;
            label.textContent = "";
            showError(`Pulling ${reference}: ${errorText(e)}`);
        })
        .finally(() => { sub.remove(); button.disabled = false });
}

function importImage(section) {
    const form = section.querySelector("#import-form");
    const path = form.querySelector("#import-path").value.trim();
    const name = form.querySelector("#import-name").value.trim();
    if (!path) return;
    const status = section.querySelector("#images-status");
    call("ImportImage", [path, variants(name ? { name: ["s", name] } : {})], "sa{sv}", IMAGES)
        .then(([names]) => {
            status.textContent = `Imported ${names.join(", ")}.`;
            return refresh();
        })
        .catch(e => showError(`Importing ${path}: ${errorText(e)}`));
}
