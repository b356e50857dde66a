//! The emitted program, run by a small interpreter of the instructions
//! [`compile`] uses, against the rules' meaning written out plainly. The real
//! kernel's verdict is checked by the cgroup v2 integration tests.

use oci_spec::runtime::LinuxDeviceCgroup;
use proptest::prelude::*;

use super::*;
use crate::cgroups::devices::{self, Rule};

/// A device access as the kernel hands it over.
#[derive(Debug, Clone, Copy)]
struct Req {
    kind: char,
    major: u32,
    minor: u32,
    /// BPF_DEVCG_ACC_* bits.
    access: i32,
}

fn req(kind: char, major: u32, minor: u32, access: &str) -> Req {
    Req {
        kind,
        major,
        minor,
        access: access_bits(access),
    }
}

/// Runs `prog` the way the kernel would, also checking what the verifier
/// insists on: jumps only forward and inside the program, R0 set at exit.
fn run(prog: &[Insn], r: Req) -> bool {
    let typ = if r.kind == 'b' { DEV_BLOCK } else { DEV_CHAR } as u32;
    let ctx = [typ | ((r.access as u32) << 16), r.major, r.minor];
    let mut reg = [0u64; 11];
    let mut r0_set = false;
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = (usize::from(i.dst), usize::from(i.src));
        let imm32 = i.imm as u32;
        let mut next = pc + 1;
        let jump = |taken: bool| {
            assert!(i.off >= 0, "backward jump at {pc}");
            if taken {
                pc + 1 + i.off as usize
            } else {
                pc + 1
            }
        };
        match i.code {
            LDX_MEM_W => {
                assert_eq!((src, i.off % 4), (1, 0), "only the context is read");
                reg[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU32_AND_K => reg[dst] = u64::from(reg[dst] as u32 & imm32),
            ALU32_RSH_K => reg[dst] = u64::from((reg[dst] as u32) >> imm32),
            ALU32_MOV_K => reg[dst] = u64::from(imm32),
            ALU32_MOV_X => reg[dst] = u64::from(reg[src] as u32),
            // Jumps compare all 64 bits against the sign-extended immediate.
            JEQ_K => next = jump(reg[dst] == i.imm as i64 as u64),
            JNE_K => next = jump(reg[dst] != i.imm as i64 as u64),
            EXIT => {
                assert!(r0_set, "exit without a verdict");
                assert!(reg[0] <= 1, "verdict {}", reg[0]);
                return reg[0] == 1;
            }
            other => panic!("unexpected opcode {other:#x}"),
        }
        r0_set |= i.code != EXIT && dst == 0;
        assert!(next < prog.len(), "runs off the end at {pc}");
        pc = next;
    }
}

/// The rules' meaning: per access bit, the last rule naming the device and
/// the bit decides; no rule means allowed.
fn reference(rules: &[Rule], r: Req) -> bool {
    [ACC_MKNOD, ACC_READ, ACC_WRITE]
        .into_iter()
        .filter(|bit| r.access & bit != 0)
        .all(|bit| {
            rules
                .iter()
                .rev()
                .find(|x| {
                    (x.kind == 'a' || x.kind == r.kind)
                        && x.major.is_none_or(|m| m == r.major)
                        && x.minor.is_none_or(|m| m == r.minor)
                        && access_bits(&x.access) & bit != 0
                })
                .is_none_or(|x| x.allow)
        })
}

/// The config's rules without runc's defaults, or with them (`rules`).
fn own(json: &str) -> Vec<Rule> {
    let d: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
    let mut r = devices::rules(&d).unwrap();
    r.truncate(d.len());
    r
}

fn with_defaults(json: &str) -> Vec<Rule> {
    let d: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).unwrap();
    devices::rules(&d).unwrap()
}

const DENY_ALL_BUT_NULL: &str = r#"[{"allow":false,"access":"rwm"},
    {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"}]"#;

#[test]
fn deny_all_then_one_device_compiles_to_one_block() {
    let prog = compile(&own(DENY_ALL_BUT_NULL));
    let code: Vec<(u8, u8, i16, i32)> = prog[6..]
        .iter()
        .map(|i| (i.code, i.dst, i.off, i.imm))
        .collect();
    assert_eq!(
        code,
        [
            (JNE_K, R2, 6, DEV_CHAR),
            (JNE_K, R4, 5, 1),
            (JNE_K, R5, 4, 3),
            (ALU32_AND_K, R3, 0, !ACC_ALL),
            (JNE_K, R3, 2, 0),
            (ALU32_MOV_K, R0, 0, 1),
            (EXIT, 0, 0, 0),
            // The deny-all: everything the allow did not decide.
            (ALU32_MOV_K, R0, 0, 0),
            (EXIT, 0, 0, 0),
        ]
    );
    // ldxw r2, [r1+0]: dst in the low nibble, src in the high one.
    assert_eq!(
        prog[0].encode().to_le_bytes(),
        [0x61, 0x12, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        prog[4].encode().to_le_bytes(),
        [0x61, 0x14, 4, 0, 0, 0, 0, 0]
    );
}

#[test]
fn the_defaults_stay_reachable_behind_a_deny_all() {
    let prog = compile(&with_defaults(DENY_ALL_BUT_NULL));
    assert!(run(&prog, req('c', 1, 3, "rw")));
    assert!(run(&prog, req('c', 1, 5, "r")), "zero is a default");
    assert!(run(&prog, req('c', 136, 7, "rw")), "pts/*");
    assert!(run(&prog, req('c', 5, 2, "rw")), "ptmx");
    assert!(!run(&prog, req('c', 1, 11, "w")), "kmsg");
    assert!(!run(&prog, req('b', 8, 0, "r")));
    // mknod of anything stays allowed (runc's "c *:* m", "b *:* m").
    assert!(run(&prog, req('c', 1, 11, "m")));
    assert!(run(&prog, req('b', 8, 0, "m")));
    assert!(devices::rules(&[]).is_ok_and(|r| !restricts(&r)));
    assert!(restricts(&with_defaults(DENY_ALL_BUT_NULL)));
}

#[test]
fn each_access_bit_is_decided_by_its_last_rule() {
    let ro_null = own(r#"[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
            {"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#);
    let prog = compile(&ro_null);
    assert!(run(&prog, req('c', 1, 3, "r")));
    assert!(!run(&prog, req('c', 1, 3, "w")));
    assert!(
        !run(&prog, req('c', 1, 3, "rw")),
        "an O_RDWR open needs both"
    );
    let split = own(r#"[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"r"},
            {"allow":true,"type":"c","major":1,"minor":3,"access":"w"}]"#);
    assert!(run(&compile(&split), req('c', 1, 3, "rw")));
    // Without a deny-all, a deny takes away only what it names.
    let prog = compile(&own(
        r#"[{"allow":false,"type":"c","major":1,"access":"w"}]"#,
    ));
    assert!(run(&prog, req('c', 1, 3, "r")));
    assert!(!run(&prog, req('c', 1, 3, "w")));
    assert!(run(&prog, req('c', 4, 3, "w")));
    assert!(run(&prog, req('b', 1, 3, "w")));
}

#[test]
fn a_deny_inside_an_allowed_wildcard_is_enforced() {
    let prog = compile(&own(r#"[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":136,"access":"rwm"},
            {"allow":false,"type":"c","major":136,"minor":2,"access":"rwm"}]"#));
    assert!(run(&prog, req('c', 136, 3, "rw")));
    assert!(!run(&prog, req('c', 136, 2, "r")));
    // A later allow-all ends every earlier rule: nothing else is emitted.
    let all = compile(&own(
        r#"[{"allow":false,"type":"c","major":1,"access":"rwm"},{"allow":true,"access":"rwm"}]"#,
    ));
    assert_eq!(all.len(), 8);
    assert!(run(&all, req('c', 1, 3, "rwm")));
}

#[test]
fn numbers_no_device_can_have_match_nothing() {
    let prog = compile(&own(r#"[{"allow":false,"access":"rwm"},
            {"allow":true,"type":"c","major":4294967295,"minor":3,"access":"rwm"}]"#));
    assert!(!run(&prog, req('c', u32::MAX, 3, "r")));
    assert!(!run(&prog, req('c', 1, 3, "r")));
}

fn rule_strategy() -> impl Strategy<Value = Rule> {
    (
        any::<bool>(),
        prop::sample::select(vec!['a', 'b', 'c']),
        prop::option::of(0u32..4),
        prop::option::of(0u32..4),
        1usize..8,
    )
        .prop_map(|(allow, kind, major, minor, bits)| Rule {
            allow,
            kind,
            major,
            minor,
            access: "rwm"
                .chars()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, c)| c)
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_program_agrees_with_the_rules(
        rules in prop::collection::vec(rule_strategy(), 0..8),
        kind in prop::sample::select(vec!['b', 'c']),
        major in 0u32..4,
        minor in 0u32..4,
        access in 1i32..8,
    ) {
        let r = Req { kind, major, minor, access };
        let prog = compile(&rules);
        prop_assert_eq!(run(&prog, r), reference(&rules, r), "{:?} {:?}", rules, r);
    }
}
