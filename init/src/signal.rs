//! Signal names and numbers as `kill` takes them: "KILL", "SIGKILL", "9".

use nix::sys::signal::Signal;
use std::str::FromStr;

pub fn parse(s: &str) -> Result<Signal, String> {
    let err = || format!("unknown signal {s:?}");
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| err());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("SIGUSR1").unwrap(), Signal::SIGUSR1);
        for bad in ["", "NOPE", "0", "65", "-1", "SIG"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
