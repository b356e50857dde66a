//! The pid, ipc and uts options applied to a spec: entries replaced,
//! removed or pointed at a path; a shared UTS namespace loses the hostname;
//! a sysctl of a namespace made the host's is still refused.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::namespaces::{NsSpec, SpecNamespaces};
use crate::options::namespaces::NsKind;
use crate::options::CreateOptions;

fn with(entries: Vec<(NsKind, NsSpec)>, shared_uts: bool) -> CreateOptions {
    CreateOptions {
        ns_spec: Some(SpecNamespaces {
            entries,
            shared_uts,
        }),
        ..Default::default()
    }
}

fn entry(s: &Spec, typ: LinuxNamespaceType) -> Option<Option<String>> {
    s.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == typ)
        .map(|n| n.path().as_ref().map(|p| p.display().to_string()))
}

#[test]
fn host_removes_container_joins_private_makes_new() {
    let mut s = crate::init_calls::spec::default_spec(false);
    s.set_hostname(Some("web".into()));
    let opts = with(
        vec![
            (NsKind::Pid, NsSpec::Host),
            (NsKind::Ipc, NsSpec::Path("/proc/7/ns/ipc".into())),
            (NsKind::Uts, NsSpec::New),
        ],
        false,
    );
    super::apply(&opts, &mut s, Path::new("/b"));
    assert_eq!(entry(&s, LinuxNamespaceType::Pid), None);
    assert_eq!(
        entry(&s, LinuxNamespaceType::Ipc),
        Some(Some("/proc/7/ns/ipc".into()))
    );
    assert_eq!(entry(&s, LinuxNamespaceType::Uts), Some(None));
    // The others stay.
    assert_eq!(entry(&s, LinuxNamespaceType::Mount), Some(None));
    assert_eq!(s.hostname().as_deref(), Some("web"));
}

#[test]
fn a_shared_uts_namespace_sets_no_hostname() {
    let mut s = crate::init_calls::spec::default_spec(false);
    s.set_hostname(Some("web".into()));
    let opts = with(vec![(NsKind::Uts, NsSpec::Host)], true);
    super::apply(&opts, &mut s, Path::new("/b"));
    assert_eq!(entry(&s, LinuxNamespaceType::Uts), None);
    assert_eq!(s.hostname(), &None);
}

#[test]
fn a_sysctl_of_a_host_ipc_namespace_is_refused() {
    let mut s = crate::init_calls::spec::default_spec(false);
    let mut opts = with(vec![(NsKind::Ipc, NsSpec::Host)], false);
    opts.security
        .sysctls
        .insert("kernel.shmmax".into(), "1024".into());
    super::apply(&opts, &mut s, Path::new("/b"));
    let e = super::security::apply(&opts.security, false, &mut s).unwrap_err();
    assert!(e.to_string().contains("ipc namespace"), "{e}");
}
