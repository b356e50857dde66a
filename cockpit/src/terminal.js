// A console in the container: `berthctl exec -it ID CMD` run by Cockpit's
// bridge (as root: administrative access required, as AttachExec is
// polkit `manage`) in a pty channel, shown with xterm.js — the terminal
// Cockpit's own Terminal page uses.
/* global cockpit */
import { Terminal } from "@xterm/xterm";
import { errorText } from "./api.js";

// Returns the function that closes it.
export function openTerminal(host, id, command, showError) {
    const term = new Terminal({ cols: 100, rows: 24, convertEol: false, fontSize: 14 });
    term.open(host);
    const channel = cockpit.channel({
        payload: "stream",
        spawn: ["berthctl", "exec", "-it", id, ...command.split(/\s+/).filter(Boolean)],
        pty: true,
        superuser: "require",
        environ: ["TERM=xterm-256color"],
        window: { rows: term.rows, cols: term.cols },
        err: "out",
    });
    channel.addEventListener("message", (_ev, data) => term.write(data));
    channel.addEventListener("close", (_ev, options) => {
        if (options.problem) showError(`Console of ${id}: ${errorText(options)}`);
        term.write("\r\n[console closed]\r\n");
    });
    const input = term.onData(data => channel.send(data));
    const resize = term.onResize(({ rows, cols }) => channel.control({ window: { rows, cols } }));
    term.focus();
    return () => {
        input.dispose();
        resize.dispose();
        channel.close();
        term.dispose();
    };
}
