//! CreateContainer's options applied to an OCI spec, through oci-spec's
//! types: what the runtime will read is what is edited.

use std::path::Path;

use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Mount, Process, Spec};

use crate::namespaces::{NsSpec, SpecNamespaces};
use crate::network::{NsChoice, SpecNet};
use crate::options::namespaces::NsKind;
use crate::options::resources::UpdateOptions;
use crate::options::CreateOptions;

/// Where a notify_socket's directory appears in the container.
const NOTIFY_DIR: &str = "/run/berth-notify";

/// Applies `opts` to `spec`, whose relative paths mean `bundle`'s.
pub fn apply(opts: &CreateOptions, spec: &mut Spec, bundle: &Path) {
    // A spec without a process is refused when the copy is checked
    // (crate::init_calls::spec::load: "process: missing"): nothing to edit.
    if let Some(process) = spec.process_mut() {
        edit_process(opts, process);
    }
    if let Some(sock) = &opts.notify_socket {
        let dir = Path::new(sock).parent().unwrap_or(Path::new("/"));
        let mut mount = Mount::default();
        mount
            .set_destination(NOTIFY_DIR.into())
            .set_typ(Some("bind".into()))
            .set_source(Some(dir.into()))
            .set_options(Some(
                ["bind", "nosuid", "nodev", "noexec"]
                    .map(String::from)
                    .to_vec(),
            ));
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        mounts.push(mount);
        spec.set_mounts(Some(mounts));
    }
    edit_resources(opts, spec);
    if let Some(path) = &opts.cgroups_path {
        let linux = spec.linux_mut().get_or_insert_with(bare_linux);
        linux.set_cgroups_path(Some(path.into()));
    }
    if let Some(net) = &opts.net_spec {
        edit_network(net, spec);
    }
    // After the network's: a shared UTS namespace undoes its hostname.
    if let Some(ns) = &opts.ns_spec {
        edit_namespaces(ns, spec);
    }
    if let Some(storage) = &opts.storage_spec {
        super::storage::edit_storage(storage, spec);
    }
    // The copy sits elsewhere: a relative rootfs must still mean the
    // bundle's.
    if let Some(root) = spec.root_mut() {
        if root.path().is_relative() {
            let path = bundle.join(root.path());
            root.set_path(path);
        }
    }
}

fn edit_process(opts: &CreateOptions, process: &mut Process) {
    if let Some(args) = &opts.args {
        process.set_args(Some(args.clone()));
    }
    if let Some(t) = opts.terminal {
        process.set_terminal(Some(t));
    }
    if let Some(w) = &opts.workdir {
        process.set_cwd(w.into());
    }
    let mut env = process.env().clone().unwrap_or_default();
    opts.env.iter().for_each(|e| set_env(&mut env, e));
    if let Some(sock) = &opts.notify_socket {
        let name = Path::new(sock).file_name().unwrap_or_default();
        let entry = format!("NOTIFY_SOCKET={NOTIFY_DIR}/{}", name.to_string_lossy());
        set_env(&mut env, &entry);
    }
    process.set_env(Some(env));
}

/// The resource options, applied as UpdateContainer applies them later.
fn edit_resources(opts: &CreateOptions, spec: &mut Spec) {
    let given = UpdateOptions {
        memory: opts.memory,
        cpus: opts.cpus,
        pids_limit: opts.pids_limit,
        res: opts.res.clone(),
    };
    if given == UpdateOptions::default() {
        return;
    }
    let linux = spec.linux_mut().get_or_insert_with(bare_linux);
    let mut res = linux.resources().clone().unwrap_or_default();
    given.apply(&mut res);
    linux.set_resources(Some(res));
}

/// The network berthd attached: the namespace (a path to join, a new one,
/// or the host's), the hostname (in a UTS namespace of its own), and the
/// generated hosts/hostname/resolv.conf bound over the image's.
fn edit_network(net: &SpecNet, spec: &mut Spec) {
    let linux = spec.linux_mut().get_or_insert_with(bare_linux);
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::Network);
    let own = |typ, path: Option<&Path>| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ).set_path(path.map(Path::to_path_buf));
        ns
    };
    match &net.ns {
        NsChoice::Host => {}
        NsChoice::New => namespaces.push(own(LinuxNamespaceType::Network, None)),
        NsChoice::Path(p) => namespaces.push(own(LinuxNamespaceType::Network, Some(p))),
    }
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts)
    {
        namespaces.push(own(LinuxNamespaceType::Uts, None));
    }
    linux.set_namespaces(Some(namespaces));
    spec.set_hostname(Some(net.hostname.clone()));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for (source, dest) in &net.files {
        mounts.retain(|m| m.destination() != Path::new(dest));
        let mut m = Mount::default();
        m.set_destination(dest.into())
            .set_typ(Some("bind".into()))
            .set_source(Some(source.clone()))
            .set_options(Some(
                ["bind", "nosuid", "nodev", "noexec"]
                    .map(String::from)
                    .to_vec(),
            ));
        mounts.push(m);
    }
    spec.set_mounts(Some(mounts));
}

/// The pid, ipc and uts options: each kind's entry replaced by a new
/// namespace, a joined one, or none (the host's). A UTS namespace that is
/// shared is not this container's to name: no hostname (the runtime would
/// set it in the host's or the other container's).
fn edit_namespaces(ns: &SpecNamespaces, spec: &mut Spec) {
    let linux = spec.linux_mut().get_or_insert_with(bare_linux);
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    for (kind, choice) in &ns.entries {
        let typ = match kind {
            NsKind::Pid => LinuxNamespaceType::Pid,
            NsKind::Ipc => LinuxNamespaceType::Ipc,
            NsKind::Uts => LinuxNamespaceType::Uts,
        };
        namespaces.retain(|n| n.typ() != typ);
        let path = match choice {
            NsSpec::Host => continue,
            NsSpec::New => None,
            NsSpec::Path(p) => Some(p.clone()),
        };
        let mut entry = LinuxNamespace::default();
        entry.set_typ(typ).set_path(path);
        namespaces.push(entry);
    }
    linux.set_namespaces(Some(namespaces));
    if ns.shared_uts {
        spec.set_hostname(None);
    }
}

/// A linux section with nothing in it, as `"linux": {}` reads. oci-spec's
/// `Linux::default()` is runc's default config (namespaces, masked and
/// read-only paths): adding resources to a spec without a linux section
/// must not add those too.
pub(crate) fn bare_linux() -> Linux {
    let mut linux = Linux::default();
    linux
        .set_resources(None)
        .set_namespaces(None)
        .set_masked_paths(None)
        .set_readonly_paths(None);
    linux
}

/// Sets `NAME=VALUE` in an env list: any earlier NAME goes, the entry is last.
pub fn set_env(env: &mut Vec<String>, entry: &str) {
    let name = entry.split('=').next().unwrap_or_default();
    env.retain(|e| e.split('=').next() != Some(name));
    env.push(entry.to_string());
}
