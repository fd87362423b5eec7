//! Reading the CA private key from PEM.
//!
//! rcgen (with the ring backend) reads PKCS#8 (`BEGIN PRIVATE KEY`, what
//! rcgen writes and what Flocker's pyOpenSSL wrote). Keys made by hand with
//! `openssl genrsa -traditional` (`BEGIN RSA PRIVATE KEY`, PKCS#1) or
//! `openssl ecparam -genkey` (`BEGIN EC PRIVATE KEY`, SEC1) are wrapped into
//! PKCS#8 here, which needs no parsing of the key itself.

use rcgen::KeyPair;
use x509_parser::pem::Pem;

/// DER of AlgorithmIdentifier { rsaEncryption, NULL }.
const RSA_ALGORITHM: &[u8] =
    &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];

/// DER of the id-ecPublicKey object identifier.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// DER object identifiers of the curves ring can sign with: P-256, P-384.
const EC_CURVE_OIDS: [&[u8]; 2] = [
    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
];

/// Parses the first private key block of `pem`.
pub fn parse_private_key_pem(pem: &str) -> Result<KeyPair, rcgen::Error> {
    let block = Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .find(|block| block.label.ends_with("PRIVATE KEY"));
    let Some(block) = block else {
        // Let rcgen say what it makes of it.
        return KeyPair::from_pem(pem);
    };
    match block.label.as_str() {
        "RSA PRIVATE KEY" => KeyPair::try_from(pkcs8(RSA_ALGORITHM, &block.contents)),
        "EC PRIVATE KEY" => EC_CURVE_OIDS
            .iter()
            .map(|curve| {
                let algorithm = der(0x30, &[EC_PUBLIC_KEY_OID, curve].concat());
                KeyPair::try_from(pkcs8(&algorithm, &block.contents))
            })
            .find(Result::is_ok)
            .unwrap_or(Err(rcgen::Error::CouldNotParseKeyPair)),
        _ => KeyPair::try_from(block.contents.as_slice()),
    }
}

/// PKCS#8 PrivateKeyInfo { version 0, algorithm, OCTET STRING key }.
fn pkcs8(algorithm: &[u8], key: &[u8]) -> Vec<u8> {
    let version = [0x02, 0x01, 0x00];
    der(0x30, &[&version[..], algorithm, &der(0x04, key)].concat())
}

/// One DER element: tag, definite length, contents.
fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = contents.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let significant = &bytes[bytes.iter().take_while(|&&b| b == 0).count()..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(contents);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_use_short_and_long_forms() {
        assert_eq!(der(0x04, &[1, 2]), [0x04, 0x02, 1, 2]);
        let long = der(0x04, &[0; 0x80]);
        assert_eq!(&long[..3], [0x04, 0x81, 0x80]);
        assert_eq!(long.len(), 3 + 0x80);
        let longer = der(0x04, &[0; 0x1234]);
        assert_eq!(&longer[..4], [0x04, 0x82, 0x12, 0x34]);
    }

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
