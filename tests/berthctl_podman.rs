//! berthctl used with podman's habits against a real berthd in one box:
//! ps's columns, filters and templates, inspect --format, stats' table,
//! logs' time options, -a verbs, wait on several, rename refused, prunes,
//! system df, exit codes 126/127; then every runnable example of the
//! podman → berthctl table in docs/operations.md.

mod common;
#[allow(unused_imports)]
use common::*;

use berth_box::SystemdBox;

const IMAGE: &str = "docker.io/local/bb:1";

#[test]
fn podman_habits_and_the_docs_table() {
    let Some(b) = berth_box::up_or_skip("berthctl_podman") else {
        return;
    };
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    podman_habits(&b);
    docs_table_examples_run(&b);
}

fn podman_habits(b: &SystemdBox) {
    let bundle = busybox_bundle("ctl-podman", &["true"]);
    let bp = bundle.path();
    // An option berthctl does not know is refused before anything is made.
    let (code, _, err) = ctl(b, &format!("run --rm --frobnicate /tmp:/x {IMAGE} true"));
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("'--frobnicate'"), "{err}");
    assert_eq!(ctl_ok(b, "ps -a -q"), "");

    // 126 and 127 as podman: not executable, not there.
    let (code, _, err) = ctl(b, &format!("run --rm --bundle {bp} /etc/passwd"));
    assert_eq!(code, 126, "{err}");
    let (code, _, err) = ctl(b, &format!("run --rm {IMAGE} no-such-program"));
    assert_eq!(code, 127, "{err}");

    ctl_ok(
        b,
        &format!("run -d --name up -l app=demo {IMAGE} sleep 300"),
    );
    let (code, _, err) = ctl(b, &format!("run --name gone --bundle {bp} sh -c 'exit 3'"));
    assert_eq!(code, 3, "{err}");
    ctl_ok(b, &format!("create --name made --bundle {bp} true"));
    ctl_ok(b, &format!("run -d --name frozen --bundle {bp} sleep 300"));
    ctl_ok(b, "pause frozen");

    // podman's columns and words; IMAGE is the image or the bundle.
    let ps = ctl_ok(b, "ps -a");
    let mut lines = ps.lines();
    let head = lines.next().unwrap_or_default();
    let cols: Vec<&str> = head
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cols,
        [
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES"
        ],
        "{ps}"
    );
    let line = |id: &str| {
        ps.lines()
            .find(|l| l.ends_with(&format!(" {id}")))
            .unwrap_or_else(|| panic!("{id} not in\n{ps}"))
            .to_string()
    };
    let up = line("up");
    assert!(up.contains(IMAGE) && up.contains("sleep 300"), "{up}");
    assert!(up.contains(" Up "), "{up}");
    let gone = line("gone");
    assert!(gone.contains("Exited (3) ") && gone.contains(bp), "{gone}");
    // The command the create gave, not the bundle's.
    assert!(gone.contains("sh -c exit 3"), "{gone}");
    assert!(line("made").contains("Created"), "{ps}");
    assert!(line("frozen").contains("Paused"), "{ps}");
    // Without -a: no stopped ones.
    assert!(!ctl_ok(b, "ps").contains("gone"));

    // -q, --filter, --format.
    let q = |args: &str| {
        let mut ids: Vec<String> = ctl_ok(b, &format!("ps -q {args}"))
            .lines()
            .map(String::from)
            .collect();
        ids.sort();
        ids.join(",")
    };
    assert_eq!(q("-a"), "frozen,gone,made,up");
    assert_eq!(q("--filter status=exited"), "gone");
    assert_eq!(
        q("--filter status=running --filter status=paused"),
        "frozen,up"
    );
    assert_eq!(q("--filter label=app=demo"), "up");
    assert_eq!(q("-a --filter name=ma"), "made");
    assert_eq!(q("--filter ancestor=local/bb:1"), "up");
    assert_eq!(
        q("-a --filter ancestor=local/bb:1 --filter status=exited"),
        ""
    );
    let (code, _, err) = ctl(b, "ps --filter colour=red");
    assert_eq!(code, 125, "{err}");
    assert_eq!(
        ctl_ok(
            b,
            "ps --filter name=up --format '{{.Names}} {{.State}} {{.Labels.app}}'"
        ),
        "up running demo\n"
    );
    let table = ctl_ok(
        b,
        "ps --filter name=up --format 'table {{.ID}}\\t{{.Names}}'",
    );
    assert!(table.starts_with("CONTAINER ID  NAMES\nup"), "{table}");
    let rows: serde_json::Value = serde_json::from_str(&ctl_ok(b, "ps -a --format json")).unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(4), "{rows}");
    let (code, _, err) = ctl(b, "ps --format '{{.Nmes}}'");
    assert_eq!(code, 125);
    assert!(err.contains("Nmes"), "{err}");

    // inspect --format.
    let pid = ctl_ok(b, "inspect --format '{{.State.Pid}}' up");
    assert!(pid.trim().parse::<u32>().unwrap() > 1, "{pid}");
    assert_eq!(
        ctl_ok(b, "inspect -f '{{.State.Status}} {{.State.ExitCode}}' gone"),
        "exited 3\n"
    );

    // stats: one table, once; json.
    let stats = ctl_ok(b, "stats --no-stream");
    let head: Vec<&str> = stats
        .lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        head,
        [
            "ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET IO",
            "BLOCK IO",
            "PIDS"
        ],
        "{stats}"
    );
    assert!(stats.lines().any(|l| l.starts_with("up ")), "{stats}");
    let s: serde_json::Value =
        serde_json::from_str(&ctl_ok(b, "stats --no-stream --format json up")).unwrap();
    assert_eq!(s[0]["Name"], "up", "{s}");
    // "--" where the box's cgroup tree has no pids controller.
    assert!(
        s[0]["PIDs"].is_string() && s[0]["MemUsage"].is_string(),
        "{s}"
    );
    // Streaming redraws until stopped.
    let streamed = b.sh_ok(&format!("timeout 2.5 {} stats -i 1 up || true", berthctl()));
    assert!(streamed.matches("MEM USAGE").count() >= 2, "{streamed}");

    // logs: -n, -t, --since, --until.
    ctl_ok(
        b,
        &format!("run --name talk --bundle {bp} sh -c 'echo one; echo two'"),
    );
    b.sh_ok("journalctl --sync");
    assert_eq!(ctl_ok(b, "logs -n 1 talk"), "two\n");
    let stamped = ctl_ok(b, "logs -t talk");
    let first = stamped.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("20") && first.ends_with(" one"),
        "{stamped}"
    );
    assert_eq!(ctl_ok(b, "logs --since 5m talk"), "one\ntwo\n");
    assert_eq!(ctl_ok(b, "logs --until 5m talk"), "");
    assert_eq!(ctl_ok(b, "logs --since 2099-01-01T00:00:00Z talk"), "");

    // wait on several; rename refused with why.
    assert_eq!(ctl_ok(b, "wait gone talk"), "3\n0\n");
    let (code, _, err) = ctl(b, "rename up web");
    assert_eq!(code, 125);
    assert!(
        err.contains("cannot rename") && err.contains("berth-up.scope"),
        "{err}"
    );

    // system df counts; container prune removes the stopped ones only.
    let df = ctl_ok(b, "system df");
    assert!(
        df.lines()
            .any(|l| l.starts_with("Images ") && l.contains(" 1 ")),
        "{df}"
    );
    assert!(df.lines().any(|l| l.starts_with("Containers ")), "{df}");
    let mut pruned: Vec<String> = ctl_ok(b, "container prune -f")
        .lines()
        .map(String::from)
        .collect();
    pruned.sort();
    assert_eq!(pruned, ["gone", "talk"]);
    assert_eq!(q("-a"), "frozen,made,up");

    // -a verbs: stop every live one, then rm them all.
    let mut stopped: Vec<String> = ctl_ok(b, "stop -a -t 1")
        .lines()
        .map(String::from)
        .collect();
    stopped.sort();
    assert_eq!(stopped, ["frozen", "up"]);
    assert_eq!(ctl_ok(b, "kill -a"), "");
    ctl_ok(b, "rm -a");
    assert_eq!(ctl_ok(b, "ps -a -q"), "");
}

/// The berthctl code spans of the table's rows, in order.
fn table_examples() -> Vec<String> {
    let doc = std::fs::read_to_string(format!("{}/docs/operations.md", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let start = doc.find("| podman | berthctl |").expect("the podman table");
    let mut out = Vec::new();
    for row in doc[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        let cell = row.split(" | ").nth(1).unwrap_or_default();
        for (i, span) in cell.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("berthctl ") {
                out.push(span.to_string());
            }
        }
    }
    out
}

fn docs_table_examples_run(b: &SystemdBox) {
    let examples = table_examples();
    assert!(examples.len() >= 30, "{examples:?}");
    let mut ran = 0;
    for ex in examples {
        if ex.contains('<') || ex.starts_with("berthctl events") {
            continue;
        }
        let cmd = ex.replacen("berthctl ", "", 1).replace("IMAGE", IMAGE);
        let (code, out, err) = ctl(b, &format!("{cmd} </dev/null"));
        assert_eq!(code, 0, "docs example `{ex}`: {out}{err}");
        ran += 1;
    }
    assert!(ran >= 30, "only {ran} examples ran");
}
