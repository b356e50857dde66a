//! Exec records against berthd in a box: execs nobody waited for
//! (`berthctl exec -d`) still end, and do not hold the container's exec
//! slots once they have.

mod common;
#[allow(unused_imports)]
use common::*;

use serde_json::json;

#[test]
fn execs_nobody_waited_for_do_not_fill_the_container() {
    let Some(b) = berth_box::up_or_skip("execs_nobody_waited_for_do_not_fill_the_container") else {
        return;
    };
    let c = berthd(&b);
    let bundle = busybox_bundle("d-execrec", &["sleep", "300"]);
    let _: zbus::zvariant::OwnedObjectPath =
        call(&c, "CreateContainer", &("r1", bundle.path(), no_options())).unwrap();
    let () = call(&c, "StartContainer", &("r1",)).unwrap();
    let process = json!({"args": ["true"], "cwd": "/", "env": ["PATH=/bin"]}).to_string();
    // As many as the store keeps records of, none waited for.
    const MAX: usize = 128;
    for _ in 0..MAX {
        let _: String = call(&c, "ExecContainer", &("r1", process.as_str(), no_options())).unwrap();
    }
    b.sh_ok(&format!(
        "for i in $(seq 600); do [ $(ls /run/berth/r1/ | grep -c '^exec-.*\\.exit\\.json$') -ge {MAX} ] && exit 0; \
         sleep 0.05; done; exit 1"
    ));
    // They have all ended: the next exec runs (it was refused as one too
    // many while their records still said running).
    let exec_id: String =
        call(&c, "ExecContainer", &("r1", process.as_str(), no_options())).unwrap();
    assert_eq!(manager(&c).wait_exec("r1", &exec_id).unwrap(), (0, 0));
    let () = call(&c, "DeleteContainer", &("r1", true)).unwrap();
}
