// berth's Cockpit page: tabs (Containers, Images, Create), the access state
// and the error bar. Everything goes to berthd over the system bus
// (api.js); the page has no server of its own.
/* global cockpit */
import "@xterm/xterm/css/xterm.css";
import "./berth.css";
import { call, errorText, watchSuperuser } from "./api.js";
import { initContainers, refresh as refreshContainers } from "./containers.js";
import { initDetails, select } from "./details.js";
import { initImages, refresh as refreshImages } from "./images.js";
import { initCreate, setImages } from "./create.js";
import { followTheme } from "./theme.js";

const $ = sel => document.querySelector(sel);

function showError(text) {
    $("#error-text").textContent = text;
    $("#error").hidden = false;
    $("#error").scrollIntoView({ block: "nearest" });
}

function showPage(name) {
    for (const tab of document.querySelectorAll("#pages [role=tab]")) {
        const on = tab.dataset.page === name;
        tab.setAttribute("aria-selected", on);
        $(`#page-${tab.dataset.page}`).hidden = !on;
    }
    if (name === "images") refreshImages();
    if (cockpit.location.path[0] !== name) cockpit.location.go([name]);
}

// Limited access: every mutating control is hidden (body.readonly
// .admin-only) and the banner says how to get them.
function setAccess(admin, state) {
    document.body.classList.toggle("readonly", !admin);
    $("#access-limited").hidden = admin || state === "init";
    $("#access-admin").hidden = !admin;
}

// WAI-ARIA tabs: Left/Right (and Home/End) move between the visible tabs
// of a tablist and select the one reached; Tab leaves the list.
function arrowKeys(tablist) {
    tablist.addEventListener("keydown", ev => {
        const tabs = [...tablist.querySelectorAll("[role=tab]")].filter(t => t.offsetParent !== null);
        const i = tabs.indexOf(document.activeElement);
        if (i < 0) return;
        const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
        if (next === undefined) return;
        ev.preventDefault();
        const tab = tabs[(next + tabs.length) % tabs.length];
        tab.focus();
        tab.click();
    });
}

function init() {
    followTheme();
    for (const list of document.querySelectorAll("[role=tablist]")) arrowKeys(list);
    $("#error-close").addEventListener("click", () => { $("#error").hidden = true });
    for (const tab of document.querySelectorAll("#pages [role=tab]")) {
        tab.addEventListener("click", () => showPage(tab.dataset.page));
    }
    initDetails($("#details"), { error: showError });
    initContainers($("#containers-table"), { select, error: showError });
    initImages($("#page-images"), { error: showError, changed: setImages });
    initCreate($("#page-create"), {
        error: showError,
        created: id => { showPage("containers"); refreshContainers(); select(id) },
    });
    watchSuperuser(setAccess);
    call("Info", [], "")
        .then(([info]) => { $("#berthd-version").textContent = `berthd ${info.version?.v ?? ""}` })
        .catch(e => showError(`berthd does not answer: ${errorText(e)}`));
    const route = () => showPage(["images", "create"].includes(cockpit.location.path[0]) ? cockpit.location.path[0] : "containers");
    cockpit.addEventListener("locationchanged", route);
    route();
    cockpit.transport.wait(() => document.body.removeAttribute("data-loading"));
}

document.addEventListener("DOMContentLoaded", init);
