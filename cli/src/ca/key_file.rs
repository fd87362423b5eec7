//! Reading the CA private key from PEM.
//!
//! rcgen (with the ring backend) reads PKCS#8 (`BEGIN PRIVATE KEY`, what
//! rcgen writes and what Flocker's pyOpenSSL wrote). Keys made by hand with
//! `openssl genrsa -traditional` (`BEGIN RSA PRIVATE KEY`, PKCS#1) or
//! `openssl ecparam -genkey` (`BEGIN EC PRIVATE KEY`, SEC1) are wrapped into
//! PKCS#8 here, which needs no parsing of the key itself.

use flocker_api::certificates::pkcs8;
use rcgen::KeyPair;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// Parses the first private key block of `pem`.
pub fn parse_private_key_pem(pem: &str) -> Result<KeyPair, rcgen::Error> {
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|_| rcgen::Error::CouldNotParseKeyPair)?;
    let der = pkcs8(&key).ok_or(rcgen::Error::CouldNotParseKeyPair)?;
    KeyPair::try_from(der.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pkcs8_that_rcgen_writes() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let read = parse_private_key_pem(&key.serialize_pem()).unwrap();
        assert_eq!(read.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn refuses_what_is_not_a_key() {
        assert!(parse_private_key_pem("").is_err());
        assert!(parse_private_key_pem("hello").is_err());
        let garbage = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        assert!(parse_private_key_pem(garbage).is_err());
    }
}
