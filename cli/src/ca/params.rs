//! What every certificate of the cluster shares: a fresh key, a random
//! serial number, the validity period and the `CN=…, OU=<cluster uuid>`
//! subject.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SerialNumber};
use ring::rand::{SecureRandom, SystemRandom};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::CaError;

/// How long certificates are valid: Flocker's 20 years (of 365 days).
pub const VALIDITY: Duration = Duration::days(20 * 365);

/// How far in the past certificates start being valid, so that a machine
/// whose clock is a little behind accepts a certificate made just now.
pub const CLOCK_SKEW: Duration = Duration::hours(1);

/// Generates the key pair of a new certificate.
///
/// ECDSA P-256, where Flocker used RSA-4096: RSA-4096 keys are slow to
/// generate and make every TLS handshake slow, while P-256 is as strong as
/// needed here (about 128-bit security, more than RSA-3072) and every
/// OpenSSL, rustls or browser client accepts it.
pub fn generate_key(what: &'static str) -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| CaError::Generate { what, source })
}

/// Certificate parameters with the cluster subject, a random serial and the
/// validity period set; extensions are left to the caller.
pub fn base_params(common_name: &str, cluster_id: Uuid) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name, cluster_id);
    params.serial_number = Some(random_serial()?);
    let now = OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + VALIDITY;
    Ok(params)
}

/// `CN=<common_name>, OU=<cluster uuid>`, in that order, as Flocker does.
pub fn subject(common_name: &str, cluster_id: Uuid) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationalUnitName, cluster_id.to_string());
    name
}

/// A random positive 128-bit serial number (the top bit is set so it is
/// always exactly 128 bits long and never zero).
pub fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|source| CaError::Random { source })?;
    bytes[0] |= 0x80;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_128_bits_and_differ() {
        let first = random_serial().unwrap().to_bytes();
        let second = random_serial().unwrap().to_bytes();
        assert_eq!(first.len(), 16);
        assert!(first[0] & 0x80 != 0);
        assert_ne!(first, second);
    }

    #[test]
    fn validity_starts_an_hour_ago_and_lasts_twenty_years() {
        let before = OffsetDateTime::now_utc();
        let params = base_params("x", Uuid::new_v4()).unwrap();
        let after = OffsetDateTime::now_utc();
        assert!(params.not_before >= before - CLOCK_SKEW);
        assert!(params.not_before <= after - CLOCK_SKEW);
        assert!(params.not_after >= before + Duration::days(7300));
        assert!(params.not_after <= after + Duration::days(7300));
    }
}
