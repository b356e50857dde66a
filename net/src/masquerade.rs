//! Outbound NAT per network, kept by berth rather than per container by the
//! bridge plugin (`ipMasq`): the plugin's way costs a chain and ~8 iptables
//! runs at every ADD and DEL (each a few ms with iptables-nft), berth's one
//! rule per network, checked once per berthd start — as netavark does.

use std::process::{Command, Stdio};

use ipnet::IpNet;

#[derive(Debug, thiserror::Error)]
#[error("{tool} {args}: {msg}")]
pub struct MasqueradeError {
    tool: &'static str,
    args: String,
    msg: String,
}

fn args(subnet: &IpNet, network: &str) -> Vec<String> {
    let s = subnet.to_string();
    [
        "-t",
        "nat",
        "POSTROUTING",
        "-s",
        &s,
        "!",
        "-d",
        &s,
        "-m",
        "comment",
        "--comment",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([
        format!("berth network {network}"),
        "-j".into(),
        "MASQUERADE".into(),
    ])
    .collect()
}

fn tool(subnet: &IpNet) -> &'static str {
    match subnet {
        IpNet::V4(_) => "iptables",
        IpNet::V6(_) => "ip6tables",
    }
}

/// `iptables -w OP` + the rule's arguments (the table first, then OP CHAIN).
fn iptables(subnet: &IpNet, network: &str, op: &str) -> Result<bool, MasqueradeError> {
    let mut a = args(subnet, network);
    a.insert(2, op.into());
    let out = Command::new(tool(subnet))
        .arg("-w")
        .args(&a)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| MasqueradeError {
            tool: tool(subnet),
            args: a.join(" "),
            msg: e.to_string(),
        })?;
    match (out.status.code(), op) {
        (Some(0), _) => Ok(true),
        // -C: 1 = no such rule. -D of a missing rule: fine.
        (Some(1), "-C") | (Some(1), "-D") => Ok(false),
        _ => Err(MasqueradeError {
            tool: tool(subnet),
            args: a.join(" "),
            msg: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

/// Adds the network's MASQUERADE rule unless it is there.
pub fn ensure(subnet: &IpNet, network: &str) -> Result<(), MasqueradeError> {
    if !iptables(subnet, network, "-C")? {
        iptables(subnet, network, "-A")?;
    }
    Ok(())
}

/// Removes it (every copy, should there be several).
pub fn remove(subnet: &IpNet, network: &str) -> Result<(), MasqueradeError> {
    for _ in 0..8 {
        if !iptables(subnet, network, "-D")? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rule_names_the_network_and_leaves_its_own_subnet_alone() {
        let a = super::args(&"10.9.0.0/24".parse().unwrap(), "app").join(" ");
        assert_eq!(
            a,
            "-t nat POSTROUTING -s 10.9.0.0/24 ! -d 10.9.0.0/24 -m comment --comment berth network app -j MASQUERADE"
        );
    }
}
