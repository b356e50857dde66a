// The create form's fields, one row per CreateContainer option (docs/api.md,
// "CreateContainer options"). The form is generated from this table: a new
// berthd option is one more row here — its key, D-Bus type, label, input
// kind and how the text becomes the value.
//
// input: "text" (one line), "lines" (one entry per line), "number",
// "checkbox". parse: text → value (throw an Error with a message for bad
// input); an empty field sends nothing, so berthd's default holds.

// Splits a command line as a shell would for words and quotes (no
// expansion): `sh -c "echo hi"` → ["sh", "-c", "echo hi"].
export function splitWords(text) {
    const words = [];
    let cur = null;
    let quote = null;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (quote) {
            if (c === quote) quote = null;
            else if (c === "\\" && quote === '"' && i + 1 < text.length) cur += text[++i];
            else cur += c;
        } else if (c === "'" || c === '"') {
            quote = c;
            cur = cur ?? "";
        } else if (c === "\\" && i + 1 < text.length) {
            cur = (cur ?? "") + text[++i];
        } else if (/\s/.test(c)) {
            if (cur !== null) words.push(cur);
            cur = null;
        } else {
            cur = (cur ?? "") + c;
        }
    }
    if (quote) throw new Error(`unclosed ${quote} quote`);
    if (cur !== null) words.push(cur);
    return words;
}

const lines = text => text.split("\n").map(l => l.trim()).filter(Boolean);
const listOf = text => text.split(/[\s,]+/).filter(Boolean);

// "512M", "1g", "1048576" → bytes (podman's --memory units, base 1024).
export function parseSize(text) {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
    if (!m) throw new Error(`"${text}" is not a size (e.g. 512M, 2G)`);
    const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase()];
    return Math.round(Number(m[1]) * mult);
}

function positiveNumber(text) {
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`"${text}" is not a positive number`);
    return n;
}

function positiveInteger(text) {
    const n = positiveNumber(text);
    if (!Number.isInteger(n)) throw new Error(`"${text}" is not a whole number`);
    return n;
}

function envEntries(text) {
    return lines(text).map(l => {
        if (!/^[^=\s]+=/.test(l)) throw new Error(`"${l}" is not NAME=VALUE`);
        return l;
    });
}

function labelMap(text) {
    const out = {};
    for (const l of lines(text)) {
        const i = l.indexOf("=");
        if (i <= 0) throw new Error(`"${l}" is not KEY=VALUE`);
        out[l.slice(0, i)] = l.slice(i + 1);
    }
    return out;
}

// "30s", "1m30s", "500ms", "2h" → µs (podman's --health-interval durations).
export function parseDuration(text) {
    const units = { us: 1, ms: 1e3, s: 1e6, m: 60e6, h: 3600e6 };
    const parts = [...text.trim().matchAll(/(\d+(?:\.\d+)?)(us|ms|s|m|h)/g)];
    if (!parts.length || parts.map(p => p[0]).join("") !== text.trim())
        throw new Error(`"${text}" is not a duration (e.g. 30s, 1m30s)`);
    return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]], 0));
}

function restartPolicy(text) {
    if (!/^(no|always|unless-stopped|on-failure(:\d+)?)$/.test(text))
        throw new Error(`"${text}" is not no, on-failure[:N], always or unless-stopped`);
    return text;
}

export const FIELDS = [
    { key: "args", type: "as", label: "Command", input: "text", parse: splitWords,
      help: "replaces the image's command, e.g. sh -c 'echo hello; sleep 600'" },
    { key: "env", type: "as", label: "Environment", input: "lines", parse: envEntries,
      help: "NAME=VALUE, one per line" },
    { key: "ports", type: "as", label: "Published ports", input: "text", parse: listOf,
      help: "podman's -p syntax, separated by spaces: 8080:80 127.0.0.1:5353:53/udp" },
    { key: "network", type: "s", label: "Network", input: "text", parse: s => s,
      help: "berth (default), a network's name, none, host, container:ID" },
    { key: "hostname", type: "s", label: "Hostname", input: "text", parse: s => s },
    { key: "workdir", type: "s", label: "Working directory", input: "text", parse: s => s },
    { key: "user", type: "s", label: "User", input: "text", parse: s => s, help: "uid[:gid] or name[:group]" },
    { key: "memory", type: "t", label: "Memory limit", input: "text", parse: parseSize, help: "e.g. 512M" },
    { key: "cpus", type: "d", label: "CPUs", input: "number", parse: positiveNumber, help: "e.g. 0.5" },
    { key: "pids_limit", type: "x", label: "Process limit", input: "number", parse: positiveInteger },
    { key: "terminal", type: "b", label: "Terminal", input: "checkbox", parse: Boolean,
      help: "give the process a pty (attach to use it)" },
    { key: "labels", type: "a{ss}", label: "Labels", input: "lines", parse: labelMap, help: "KEY=VALUE, one per line" },
    { key: "volumes", type: "as", label: "Volumes", input: "lines", parse: lines,
      help: "podman's -v, one per line: NAME:/path (a named volume) or /host/path:/path[:ro]" },
    { key: "tmpfs", type: "as", label: "tmpfs mounts", input: "lines", parse: lines,
      help: "one per line: /path[:size=64m,mode=1777]" },
    { key: "read_only", type: "b", label: "Read-only root", input: "checkbox", parse: Boolean,
      help: "/run, /tmp and /var/tmp stay writable" },
    { key: "restart", type: "s", label: "Restart policy", input: "text", parse: restartPolicy,
      help: "no, on-failure[:N], always, unless-stopped" },
    { key: "cap_add", type: "as", label: "Add capabilities", input: "text", parse: listOf,
      help: "e.g. NET_ADMIN SYS_TIME" },
    { key: "cap_drop", type: "as", label: "Drop capabilities", input: "text", parse: listOf,
      help: "e.g. ALL" },
    { key: "health_cmd", type: "as", label: "Health check", input: "text", parse: t => ["/bin/sh", "-c", t],
      help: "a shell command run in the container; exit 0 = healthy" },
    { key: "health_interval", type: "t", label: "Health interval", input: "text", parse: parseDuration,
      help: "e.g. 30s (default)" },
];
