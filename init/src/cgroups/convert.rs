//! The number conversions between OCI (cgroup v1 terms), cgroup v2 and
//! systemd. They are runc's, because users' configs were written against it.

use super::resources::Limit;
use super::{CgroupError, Result};

pub(crate) fn invalid(setting: &str, value: impl ToString, reason: &str) -> CgroupError {
    CgroupError::InvalidValue {
        setting: setting.into(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// OCI (like cgroup v1) limits memory+swap; v2 and systemd limit swap alone.
/// runc's ConvertMemorySwapToCgroupV2Value, with 0 = unset and -1 = unlimited.
pub fn swap_only(memsw: Option<i64>, memory: Option<i64>) -> Result<Option<Limit>> {
    let swap = memsw.unwrap_or(0);
    let mem = memory.unwrap_or(0);
    // As on v1: an unlimited memory with no swap setting unlimits swap too.
    if mem == -1 && swap == 0 {
        return Ok(Some(Limit::Max));
    }
    match swap {
        0 => return Ok(None),
        -1 => return Ok(Some(Limit::Max)),
        s if s < 0 => {
            return Err(invalid(
                "memory.swap",
                s,
                "must be -1 (unlimited) or positive",
            ))
        }
        _ => {}
    }
    if mem <= 0 {
        return Err(invalid(
            "memory.swap",
            swap,
            "a swap limit needs a memory limit (memory.swap is memory+swap)",
        ));
    }
    if swap < mem {
        return Err(invalid(
            "memory.swap",
            swap,
            "memory.swap is memory+swap, so it must be >= memory.limit",
        ));
    }
    Ok(Some(Limit::Value((swap - mem) as u64)))
}

/// cgroup v1 cpu.shares (2..262144) → v2 cpu.weight (1..10000), as runc does.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// OCI blockIO.weight (10..1000, v1 blkio.weight) → v2 io.weight (1..10000).
pub fn blkio_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + ((w - 10) * 9999) / 990
}

/// OCI quota/period → systemd CPUQuotaPerSecUSec, as runc's addCpuQuota: systemd
/// stores the quota as a whole percent of a CPU, so a fraction is rounded up to
/// the next 10 ms per second, or the container would get less than asked.
pub fn quota_per_sec(quota: Option<i64>, period: Option<u64>) -> Option<u64> {
    let q = quota.unwrap_or(0);
    let p = period.unwrap_or(0);
    if q == 0 && p == 0 {
        return None;
    }
    if q <= 0 {
        return Some(u64::MAX);
    }
    let p = if p == 0 { 100_000 } else { p };
    let mut per_sec = (q as u64).saturating_mul(1_000_000) / p;
    if per_sec % 10_000 != 0 {
        per_sec = (per_sec / 10_000 + 1) * 10_000;
    }
    Some(per_sec)
}

/// Largest CPU / NUMA node number accepted in a list: the kernel's NR_CPUS
/// ceiling; bigger numbers are typos, and would make huge masks.
const MAX_CPU: u32 = 8191;

/// A cpuset list ("0-2,4") → systemd's AllowedCPUs bitmask: little-endian
/// bytes, bit n of byte n/8 = CPU n; no trailing zero bytes (runc's RangeToBits).
pub fn list_to_bitmask(setting: &str, list: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| invalid(setting, format!("{list:?}"), why);
    let mut bytes: Vec<u8> = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(bad("empty element; use a list like 0-2,4"));
        }
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let parse = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| bad("not a number; use a list like 0-2,4"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(bad("range start is above its end"));
        }
        if hi > MAX_CPU {
            return Err(bad("number above 8191"));
        }
        for n in lo..=hi {
            let i = (n / 8) as usize;
            if bytes.len() <= i {
                bytes.resize(i + 1, 0);
            }
            bytes[i] |= 1 << (n % 8);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out-of-range values are clamped like the kernel does, not wrapped.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(u64::MAX), 10_000);
    }

    #[test]
    fn blkio_weight_converts_like_runc() {
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn cpu_lists_become_little_endian_masks() {
        assert_eq!(list_to_bitmask("cpu.cpus", "0-2,4").unwrap(), vec![0x17]);
        assert_eq!(list_to_bitmask("cpu.cpus", "0").unwrap(), vec![0x01]);
        assert_eq!(list_to_bitmask("cpu.cpus", "8").unwrap(), vec![0x00, 0x01]);
        assert_eq!(
            list_to_bitmask("cpu.cpus", "7-9").unwrap(),
            vec![0x80, 0x03]
        );
        assert_eq!(list_to_bitmask("cpu.cpus", " 1 , 3 ").unwrap(), vec![0x0a]);
        for bad in ["", "a", "3-1", "1,,2", "0-9000", "-1"] {
            let e = list_to_bitmask("cpu.cpus", bad).unwrap_err();
            assert!(e.to_string().contains("cpu.cpus"), "{bad}: {e}");
        }
    }

    #[test]
    fn swap_is_converted_to_swap_only() {
        let mb = 1 << 20;
        assert_eq!(swap_only(None, None).unwrap(), None);
        assert_eq!(swap_only(Some(0), Some(64 * mb)).unwrap(), None);
        assert_eq!(
            swap_only(Some(96 * mb), Some(64 * mb)).unwrap(),
            Some(Limit::Value(32 * mb as u64))
        );
        assert_eq!(
            swap_only(Some(64 * mb), Some(64 * mb)).unwrap(),
            Some(Limit::Value(0))
        );
        assert_eq!(
            swap_only(Some(-1), Some(64 * mb)).unwrap(),
            Some(Limit::Max)
        );
        assert_eq!(swap_only(None, Some(-1)).unwrap(), Some(Limit::Max));
        assert!(swap_only(Some(32 * mb), Some(64 * mb)).is_err());
        assert!(swap_only(Some(32 * mb), None).is_err());
        assert!(swap_only(Some(-5), Some(64 * mb)).is_err());
    }

    #[test]
    fn quota_rounds_up_to_whole_percent() {
        assert_eq!(quota_per_sec(None, None), None);
        assert_eq!(quota_per_sec(Some(50_000), Some(100_000)), Some(500_000));
        assert_eq!(quota_per_sec(Some(50_000), None), Some(500_000));
        // 12345/100000 s per s = 123450 µs → rounded up to 130000 (13 %).
        assert_eq!(quota_per_sec(Some(12_345), Some(100_000)), Some(130_000));
        assert_eq!(quota_per_sec(Some(-1), Some(100_000)), Some(u64::MAX));
        assert_eq!(quota_per_sec(None, Some(50_000)), Some(u64::MAX));
    }
}
