//! Checks of the names given on the command line. Hostnames and usernames
//! become file names, so anything that could escape the output directory or
//! make an unusable certificate is refused before any work is done.

use std::net::IpAddr;

use rcgen::SanType;

use super::CaError;

/// The longest common name X.509 allows (ub-common-name).
const MAX_COMMON_NAME: usize = 64;

/// Checks a cluster name, which becomes the CA's common name.
pub fn check_cluster_name(name: &str) -> Result<(), CaError> {
    let refuse = |reason| invalid("cluster name", name, reason);
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.chars().count() > MAX_COMMON_NAME {
        return Err(refuse("it is longer than 64 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(refuse("it contains control characters"));
    }
    Ok(())
}

/// Checks an API username: 1 to 64 letters, digits, `-`, `_` or `.`.
pub fn check_username(username: &str) -> Result<(), CaError> {
    let refuse = |reason| invalid("username", username, reason);
    if username.is_empty() {
        return Err(refuse("it is empty"));
    }
    // A username becomes the common name "user-<username>".
    if username.len() > MAX_COMMON_NAME {
        return Err(refuse("it is longer than 64 characters"));
    }
    if !username.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(refuse("use only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

/// The subject alternative name for the control service's `hostname`
/// argument: an IP address if it parses as one, else a DNS name, which must
/// be a valid hostname (labels of letters, digits and inner `-`).
pub fn control_service_name(hostname: &str) -> Result<SanType, CaError> {
    if let Ok(address) = hostname.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(address));
    }
    let refuse = |reason| invalid("hostname", hostname, reason);
    if hostname.is_empty() {
        return Err(refuse("it is empty"));
    }
    if hostname.len() > 253 {
        return Err(refuse("it is longer than 253 characters"));
    }
    for label in hostname.split('.') {
        if label.is_empty() {
            return Err(refuse("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(refuse("it has a label longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(refuse("use an IP address or a DNS name of letters, digits, '-' and '.'"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(refuse("a label starts or ends with '-'"));
        }
    }
    let name = hostname.try_into().map_err(|_| refuse("it is not an ASCII DNS name"))?;
    Ok(SanType::DnsName(name))
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> CaError {
    CaError::InvalidArgument { what, value: value.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for good in ["alice", "a", "bob.smith_2-x", &"u".repeat(64)] {
            check_username(good).unwrap();
        }
        for bad in ["", "a/b", "../x", "a b", "é", "x\n", &"u".repeat(65)] {
            let error = check_username(bad).unwrap_err();
            assert!(error.to_string().starts_with("invalid username"), "{error}");
        }
    }

    #[test]
    fn cluster_names() {
        check_cluster_name("my cluster").unwrap();
        check_cluster_name("").unwrap_err();
        check_cluster_name("a\tb").unwrap_err();
        check_cluster_name(&"c".repeat(65)).unwrap_err();
    }

    #[test]
    fn control_service_names() {
        assert_eq!(
            control_service_name("10.0.0.1").unwrap(),
            SanType::IpAddress("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            control_service_name("::1").unwrap(),
            SanType::IpAddress("::1".parse().unwrap())
        );
        assert_eq!(
            control_service_name("control.example.com").unwrap(),
            SanType::DnsName("control.example.com".try_into().unwrap())
        );
        for bad in
            ["", "a..b", "a/b", "../etc", "-a.b", "a_b", "fe80::1%eth0", "x.", &"a".repeat(64)]
        {
            let error = control_service_name(bad).unwrap_err();
            assert!(error.to_string().starts_with("invalid hostname"), "{error}");
        }
    }
}
