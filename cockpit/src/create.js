// The create/run form: the image, the name, the FIELDS table's options →
// CreateContainer(id, "", a{sv}), then StartContainer when asked.
import { call, el, errorText } from "./api.js";
import { FIELDS } from "./create-options.js";

let form;
let showError = () => {};
let onCreated = () => {};

export function initCreate(section, { error, created }) {
    form = section.querySelector("#create-form");
    showError = error;
    onCreated = created;
    const host = form.querySelector("#create-fields");
    for (const f of FIELDS) host.append(fieldRow(f));
    form.addEventListener("submit", ev => { ev.preventDefault(); submit() });
}

// The image list comes from the Images tab's ListImages.
export function setImages(images) {
    const list = form.querySelector("#create-images");
    list.replaceChildren(...images.map(i => el("option", { value: i.name })));
}

function fieldRow(f) {
    const id = `create-${f.key}`;
    let input;
    if (f.input === "lines") input = el("textarea", { id, name: f.key, rows: 3 });
    else if (f.input === "checkbox") input = el("input", { id, name: f.key, type: "checkbox" });
    else input = el("input", { id, name: f.key, type: f.input === "number" ? "number" : "text", step: "any" });
    return el("div", { class: "form-row" },
        el("label", { for: id }, f.label),
        input,
        f.help ? el("small", { class: "help" }, f.help) : null);
}

// The a{sv} of the form, or an Error naming the field that is wrong.
export function options() {
    const opts = {};
    for (const f of FIELDS) {
        const input = form.querySelector(`#create-${f.key}`);
        let value;
        if (f.input === "checkbox") {
            if (!input.checked) continue;
            value = true;
        } else {
            const text = input.value.trim();
            if (!text) continue;
            try {
                value = f.parse(text);
            } catch (e) {
                throw new Error(`${f.label}: ${e.message}`);
            }
        }
        opts[f.key] = { t: f.type, v: value };
    }
    return opts;
}

function submit() {
    const status = form.querySelector("#create-status");
    const image = form.querySelector("#create-image").value.trim();
    const name = form.querySelector("#create-name").value.trim();
    const start = form.querySelector("#create-start").checked;
    let opts;
    try {
        if (!image) throw new Error("Image: choose an image of the store");
        if (!name) throw new Error("Name: give the container a name");
        opts = options();
    } catch (e) {
        status.textContent = e.message;
        return;
    }
    opts.image = { t: "s", v: image };
    status.textContent = `Creating ${name}…`;
    call("CreateContainer", [name, "", opts], "ssa{sv}")
        .then(() => (start ? call("StartContainer", [name], "s") : null))
        .then(() => {
            status.textContent = start ? `${name} is running.` : `${name} is created.`;
            onCreated(name);
        })
        .catch(e => {
            status.textContent = "";
            showError(`Creating ${name}: ${errorText(e)}`);
        });
}
