// Cockpit's dark theme: the shell keeps the choice in localStorage
// "shell:style" (auto, light, dark) and tells open pages with a
// "cockpit-style" event; pages mark <html> with pf-theme-dark, as the
// packages of Cockpit 287 do.
function apply(style) {
    style = style || localStorage.getItem("shell:style") || "auto";
    const prefersDark = window.matchMedia?.("(prefers-color-scheme: dark)").matches;
    const dark = style === "dark" || (style === "auto" && prefersDark);
    document.documentElement.classList.toggle("pf-theme-dark", dark);
}

export function followTheme() {
    window.addEventListener("storage", ev => { if (ev.key === "shell:style") apply() });
    window.addEventListener("cockpit-style", ev => apply(ev.detail?.style));
    window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener("change", () => apply());
    apply();
}
