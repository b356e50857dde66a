//! `linux.resources.devices` on cgroup v2: the rules compiled into a
//! BPF_PROG_TYPE_CGROUP_DEVICE program (v2 has no devices.allow file; the
//! kernel asks the programs attached to the cgroup instead).
//!
//! The kernel runs the program with `struct bpf_cgroup_dev_ctx` { u32
//! access_type (device type in the low 16 bits, BPF_DEVCG_ACC_* bits in the
//! high 16), u32 major, u32 minor } and allows the access when it returns 1.
//!
//! Semantics: the last rule that matches the device and an access bit decides
//! that bit (runc's devicefilter and youki walk the rules backwards too);
//! a request is allowed when every bit it asks for is, and bits no rule names
//! fall back to "allowed", as a new v1 cgroup inherits its parent's allow-all.
//! Deciding per bit keeps `deny c 1:3 w` after `allow c 1:3 rwm` meaning
//! "read-only /dev/null" for an O_RDWR open too. Where v1 would ignore a deny
//! that splits an allowed wildcard (`allow c 136:* rwm; deny c 136:2 rwm`),
//! this program denies: it is never less strict than the rules say.
//!
//! The program is emitted by hand, like runc's: a few dozen fixed-shape
//! instructions do not justify a BPF toolchain (aya and libbpf-rs want
//! clang or bpf-linker and an ELF object).

use crate::cgroups::devices::Rule;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The kernel's layout: code, then dst_reg in the low nibble and src_reg
    /// in the high one (little-endian bitfields), off, imm.
    pub fn encode(&self) -> u64 {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        u64::from_le_bytes(b)
    }
}

// Opcodes (linux/bpf.h, bpf_common.h): class | op | source.
pub(crate) const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
pub(crate) const ALU32_AND_K: u8 = 0x04 | 0x50; // BPF_ALU | BPF_AND | BPF_K
pub(crate) const ALU32_RSH_K: u8 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K
pub(crate) const ALU32_MOV_K: u8 = 0x04 | 0xb0; // BPF_ALU | BPF_MOV | BPF_K
pub(crate) const ALU32_MOV_X: u8 = 0x04 | 0xb0 | 0x08; // BPF_ALU | BPF_MOV | BPF_X
pub(crate) const JEQ_K: u8 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
pub(crate) const JNE_K: u8 = 0x05 | 0x50; // BPF_JMP | BPF_JNE | BPF_K
pub(crate) const EXIT: u8 = 0x05 | 0x90; // BPF_JMP | BPF_EXIT

// BPF_DEVCG_DEV_* and BPF_DEVCG_ACC_*.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

// Registers: R1 the context on entry, then scratch; R2 type, R3 the access
// bits not decided yet, R4 major, R5 minor; R0 the verdict.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// A jump offset meaning "to the end of this rule's block", patched once the
/// block's length is known.
const TO_NEXT: i16 = i16::MIN;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

fn ret(verdict: bool) -> [Insn; 2] {
    [
        insn(ALU32_MOV_K, R0, 0, 0, i32::from(verdict)),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

fn access_bits(access: &str) -> i32 {
    access
        .chars()
        .map(|c| match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

/// Does any rule take something away? If not the program would allow
/// everything, and attaching it would only cost a syscall per device open.
pub fn restricts(rules: &[Rule]) -> bool {
    rules.iter().any(|r| !r.allow)
}

/// The program for `rules` (as [`crate::cgroups::devices::rules`] returns them:
/// validated, defaults appended).
pub fn compile(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0),
        insn(ALU32_AND_K, R2, 0, 0, 0xffff),
        insn(LDX_MEM_W, R3, R1, 0, 0),
        insn(ALU32_RSH_K, R3, 0, 0, 16),
        insn(LDX_MEM_W, R4, R1, 4, 0),
        insn(LDX_MEM_W, R5, R1, 8, 0),
    ];
    for r in rules.iter().rev() {
        let acc = access_bits(&r.access);
        let wildcard = r.major.is_none() && r.minor.is_none();
        if r.kind == 'a' && wildcard && acc == ACC_ALL {
            // Decides every bit of every device: what comes before is dead
            // code, which the verifier refuses.
            prog.extend(ret(r.allow));
            return prog;
        }
        // The kernel's majors have 12 bits and minors 20: a number beyond
        // i32 (which the 64-bit compare would sign-extend) matches nothing.
        let num = |n: Option<u32>| n.map(i32::try_from);
        let (Ok(major), Ok(minor)) = (num(r.major).transpose(), num(r.minor).transpose()) else {
            continue;
        };
        prog.extend(block(r, acc, major, minor));
    }
    prog.extend(ret(true));
    prog
}

/// One rule: skip to the next block unless the device matches and the rule
/// names an undecided bit; a deny then refuses, an allow decides its bits
/// and allows once none are left.
fn block(r: &Rule, acc: i32, major: Option<i32>, minor: Option<i32>) -> Vec<Insn> {
    let mut b = Vec::new();
    match r.kind {
        'b' => b.push(insn(JNE_K, R2, 0, TO_NEXT, DEV_BLOCK)),
        'c' => b.push(insn(JNE_K, R2, 0, TO_NEXT, DEV_CHAR)),
        _ => {}
    }
    if let Some(major) = major {
        b.push(insn(JNE_K, R4, 0, TO_NEXT, major));
    }
    if let Some(minor) = minor {
        b.push(insn(JNE_K, R5, 0, TO_NEXT, minor));
    }
    if acc != ACC_ALL {
        b.push(insn(ALU32_MOV_X, R1, R3, 0, 0));
        b.push(insn(ALU32_AND_K, R1, 0, 0, acc));
        b.push(insn(JEQ_K, R1, 0, TO_NEXT, 0));
    }
    if r.allow {
        b.push(insn(ALU32_AND_K, R3, 0, 0, !acc));
        b.push(insn(JNE_K, R3, 0, TO_NEXT, 0));
        b.extend(ret(true));
    } else {
        b.extend(ret(false));
    }
    let len = b.len();
    for (i, ins) in b.iter_mut().enumerate() {
        if ins.off == TO_NEXT {
            // Relative to the instruction after the jump. A block has at
            // most 11 instructions, so the cast cannot truncate.
            ins.off = (len - i - 1) as i16;
        }
    }
    b
}

#[cfg(test)]
mod tests;
