//! Flocker's X.509 v1 certificates, which WebPKI will not parse: a v1 `cluster.crt` read as a
//! trust anchor (its subject and public key), and, with `--tls-library openssl`, a v1 client
//! certificate's chain verified by the system's OpenSSL and its handshake signature by ring
//! against its public key, by the same rules rustls applies to any certificate.

use std::path::Path;
use std::sync::Arc;

use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509, X509PurposeId, X509StoreContext, X509VerifyResult};
use rustls::SignatureScheme;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, Der, SubjectPublicKeyInfoDer, TrustAnchor, UnixTime};
use x509_parser::der_parser::asn1_rs::Any;
use x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS;
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};

use super::TlsSetupError;

/// An X.509 v1 certificate as a trust anchor: its subject and public key, which is all an
/// anchor is (RFC 5280, 6.1.1); the rest of it is never looked at, as for any anchor. `None`
/// for anything else, and for a v1 certificate claiming name constraints, which would be lost.
pub(super) fn version_1_trust_anchor(der: &CertificateDer<'_>) -> Option<TrustAnchor<'static>> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let constrained =
        certificate.extensions().iter().any(|e| e.oid == OID_X509_EXT_NAME_CONSTRAINTS);
    if certificate.version() != X509Version::V1 || constrained {
        return None;
    }
    // WebPKI keeps both without their outer SEQUENCE's tag and length.
    let contents = |element: &[u8]| Any::from_der(element).ok().map(|(_, any)| any.data.to_vec());
    Some(TrustAnchor {
        subject: Der::from(contents(certificate.subject().as_raw())?),
        subject_public_key_info: Der::from(contents(certificate.public_key().raw)?),
        name_constraints: None,
    })
}

pub(super) fn is_version_1(der: &CertificateDer<'_>) -> bool {
    X509Certificate::from_der(der).is_ok_and(|(_, c)| c.version() == X509Version::V1)
}

/// The SubjectPublicKeyInfo of a certificate, as it is written in it.
fn public_key(der: &CertificateDer<'_>) -> Result<SubjectPublicKeyInfoDer<'static>, rustls::Error> {
    let (_, certificate) = X509Certificate::from_der(der)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    Ok(SubjectPublicKeyInfoDer::from(certificate.public_key().raw.to_vec()))
}

/// The TLS version whose rules a handshake signature follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tls {
    V12,
    V13,
}

/// A handshake signature checked against the certificate's public key alone, as rustls's
/// `verify_tls12_signature` and `verify_tls13_signature` check it against a certificate WebPKI
/// parsed: in TLS 1.2 each algorithm the scheme may mean is tried whose key type is the key's;
/// in TLS 1.3 only schemes it allows, each meaning one algorithm (ECDSA's names the curve).
pub(super) fn verify_signature_with_key(
    message: &[u8],
    certificate: &CertificateDer<'_>,
    scheme: SignatureScheme,
    signature: &[u8],
    algorithms: &WebPkiSupportedAlgorithms,
    tls: Tls,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    let unadvertised = rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme;
    if tls == Tls::V13 && !allowed_in_tls_1_3(scheme) {
        return Err(unadvertised.into());
    }
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(supported, _)| *supported == scheme)
        .map(
            |(_, candidates)| {
                if tls == Tls::V13 { &candidates[..candidates.len().min(1)] } else { candidates }
            },
        )
        .ok_or(unadvertised)?;
    let spki = public_key(certificate)?;
    let key = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
    let mut error = None;
    for algorithm in candidates {
        match key.verify_signature(*algorithm, message, signature) {
            Ok(()) => return Ok(HandshakeSignatureValid::assertion()),
            Err(other @ webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {
                error = Some(other);
            }
            Err(other) => {
                error = Some(other);
                break;
            }
        }
    }
    Err(match error {
        Some(webpki::Error::InvalidSignatureForPublicKey) => rustls::CertificateError::BadSignature,
        Some(other) => rustls::CertificateError::Other(rustls::OtherError(Arc::new(other))),
        None => rustls::CertificateError::ApplicationVerificationFailure, // no algorithm at all
    }
    .into())
}

/// The schemes a TLS 1.3 handshake may be signed with (RFC 8446, 4.2.3: no PKCS#1 v1.5, no
/// SHA-1 or SHA-224, no DSA).
fn allowed_in_tls_1_3(scheme: SignatureScheme) -> bool {
    use SignatureScheme::*;
    matches!(
        scheme,
        ECDSA_NISTP256_SHA256
            | ECDSA_NISTP384_SHA384
            | ECDSA_NISTP521_SHA512
            | RSA_PSS_SHA256
            | RSA_PSS_SHA384
            | RSA_PSS_SHA512
            | ED25519
            | ED448
    )
}

/// OpenSSL's chain verification, as Flocker 1.x's services had it, for X.509 v1 client
/// certificates: `cluster.crt` is the only trust (no system store, no partial chains); every
/// signature, every certificate's validity at the handshake's time and the CA's
/// basicConstraints are checked, and the purpose `sslclient` (an extendedKeyUsage must allow
/// clientAuth). Not OpenSSL's strict mode, which refuses the very certificates this is for.
#[derive(Debug)]
pub(super) struct OpenSslChains {
    roots: Vec<X509>,
}

/// Why OpenSSL refused a chain: its words for the log, the error for the handshake's alert.
pub(super) struct ChainRefused {
    pub(super) reason: String,
    pub(super) error: rustls::Error,
}

impl OpenSslChains {
    pub(super) fn new(path: &Path, roots: &[CertificateDer<'_>]) -> Result<Self, TlsSetupError> {
        let roots = roots.iter().map(|root| X509::from_der(root)).collect::<Result<_, _>>();
        roots
            .map(|roots| Self { roots })
            .map_err(|source| TlsSetupError::OpenSslRoot { path: path.to_owned(), source })
    }

    pub(super) fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), ChainRefused> {
        let failed = |error: openssl::error::ErrorStack| ChainRefused {
            reason: error.to_string(),
            error: rustls::CertificateError::BadEncoding.into(),
        };
        let certificate = X509::from_der(end_entity).map_err(failed)?;
        let mut chain = Stack::new().map_err(failed)?;
        for intermediate in intermediates {
            chain.push(X509::from_der(intermediate).map_err(failed)?).map_err(failed)?;
        }
        // A store per handshake, for the handshake's time: it holds one or two certificates.
        let mut store = X509StoreBuilder::new().map_err(failed)?;
        for root in &self.roots {
            store.add_cert(root.clone()).map_err(failed)?;
        }
        let mut parameters = X509VerifyParam::new().map_err(failed)?;
        parameters.set_time(now.as_secs() as _);
        parameters.set_purpose(X509PurposeId::SSL_CLIENT).map_err(failed)?;
        store.set_param(&parameters).map_err(failed)?;
        let store = store.build();
        let mut context = X509StoreContext::new().map_err(failed)?;
        let result = context
            .init(&store, &certificate, &chain, |context| {
                Ok(if context.verify_cert()? { X509VerifyResult::OK } else { context.error() })
            })
            .map_err(failed)?;
        if result == X509VerifyResult::OK {
            Ok(())
        } else {
            let error = certificate_error(result).into();
            Err(ChainRefused { reason: result.error_string().to_owned(), error })
        }
    }
}

/// The TLS alert for OpenSSL's verdict.
fn certificate_error(result: X509VerifyResult) -> rustls::CertificateError {
    use openssl_sys::*;
    match result.as_raw() {
        X509_V_ERR_CERT_HAS_EXPIRED => rustls::CertificateError::Expired,
        X509_V_ERR_CERT_NOT_YET_VALID => rustls::CertificateError::NotValidYet,
        X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT
        | X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
        | X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN => rustls::CertificateError::UnknownIssuer,
        X509_V_ERR_CERT_SIGNATURE_FAILURE => rustls::CertificateError::BadSignature,
        X509_V_ERR_INVALID_PURPOSE => rustls::CertificateError::InvalidPurpose,
        _ => rustls::CertificateError::ApplicationVerificationFailure,
    }
}

#[cfg(test)]
mod tests {
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::{Padding, Rsa};
    use openssl::sign::{RsaPssSaltlen, Signer};
    use openssl::x509::X509Builder;
    use rustls::RootCertStore;

    use super::*;

    const MESSAGE: &[u8] = b"the handshake so far";

    /// An X.509 v1 certificate for `key` (no version set, as flocker-ca made them), valid from
    /// `not_before` for a day, signed by `issuer` or by itself.
    fn version_1(
        common_name: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        not_before: i64,
    ) -> X509 {
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", common_name).unwrap();
        let name = name.build();
        let mut builder = X509Builder::new().unwrap();
        builder
            .set_serial_number(
                &openssl::asn1::Asn1Integer::from_bn(&openssl::bn::BigNum::from_u32(7).unwrap())
                    .unwrap(),
            )
            .unwrap();
        builder.set_subject_name(&name).unwrap();
        builder.set_issuer_name(issuer.map_or(&*name, |(c, _)| c.subject_name())).unwrap();
        builder.set_not_before(&openssl::asn1::Asn1Time::from_unix(not_before).unwrap()).unwrap();
        let not_after = openssl::asn1::Asn1Time::from_unix(not_before + DAY).unwrap();
        builder.set_not_after(&not_after).unwrap();
        builder.set_pubkey(key).unwrap();
        builder.sign(issuer.map_or(key, |(_, k)| k), MessageDigest::sha256()).unwrap();
        builder.build()
    }

    const DAY: i64 = 24 * 60 * 60;
    const NOW: i64 = 1_800_000_000;

    fn rsa() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn p256() -> PKey<Private> {
        let group = EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn der(certificate: &X509) -> CertificateDer<'static> {
        CertificateDer::from(certificate.to_der().unwrap())
    }

    fn sign(key: &PKey<Private>, digest: MessageDigest, pss: bool) -> Vec<u8> {
        let mut signer = Signer::new(digest, key).unwrap();
        if pss {
            signer.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            signer.set_rsa_mgf1_md(digest).unwrap();
            signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
        }
        signer.sign_oneshot_to_vec(MESSAGE).unwrap()
    }

    fn verify(
        certificate: &X509,
        scheme: SignatureScheme,
        signature: &[u8],
        tls: Tls,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        verify_signature_with_key(MESSAGE, &der(certificate), scheme, signature, &algorithms, tls)
    }

    #[test]
    fn a_v1_certificates_rsa_key_checks_the_handshake_signature_as_each_tls_version_allows() {
        let key = rsa();
        let certificate = version_1("user-plugin", &key, None, NOW);
        let pkcs1 = sign(&key, MessageDigest::sha256(), false);
        let pss = sign(&key, MessageDigest::sha384(), true);
        assert!(verify(&certificate, SignatureScheme::RSA_PKCS1_SHA256, &pkcs1, Tls::V12).is_ok());
        assert!(verify(&certificate, SignatureScheme::RSA_PSS_SHA384, &pss, Tls::V12).is_ok());
        assert!(verify(&certificate, SignatureScheme::RSA_PSS_SHA384, &pss, Tls::V13).is_ok());
        // TLS 1.3 has no PKCS#1 v1.5 signatures; and a signature must be of this very message.
        assert!(verify(&certificate, SignatureScheme::RSA_PKCS1_SHA256, &pkcs1, Tls::V13).is_err());
        assert!(verify(&certificate, SignatureScheme::RSA_PSS_SHA256, &pss, Tls::V12).is_err());
    }

    #[test]
    fn a_signature_by_another_key_than_the_certificates_is_refused() {
        let certificate = version_1("user-plugin", &rsa(), None, NOW);
        let forged = sign(&rsa(), MessageDigest::sha256(), false);
        let refused = verify(&certificate, SignatureScheme::RSA_PKCS1_SHA256, &forged, Tls::V12);
        assert!(
            matches!(
                refused,
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))
            ),
            "{refused:?}"
        );
        let ecdsa = version_1("user-plugin", &p256(), None, NOW);
        let forged = sign(&p256(), MessageDigest::sha256(), false);
        assert!(verify(&ecdsa, SignatureScheme::ECDSA_NISTP256_SHA256, &forged, Tls::V13).is_err());
    }

    #[test]
    fn in_tls_1_3_an_ecdsa_scheme_names_the_curve_of_the_key() {
        let key = p256();
        let certificate = version_1("user-plugin", &key, None, NOW);
        let sha256 = sign(&key, MessageDigest::sha256(), false);
        let sha384 = sign(&key, MessageDigest::sha384(), false);
        assert!(
            verify(&certificate, SignatureScheme::ECDSA_NISTP256_SHA256, &sha256, Tls::V13).is_ok()
        );
        assert!(
            verify(&certificate, SignatureScheme::ECDSA_NISTP384_SHA384, &sha384, Tls::V13)
                .is_err()
        );
        assert!(
            verify(&certificate, SignatureScheme::ECDSA_NISTP384_SHA384, &sha384, Tls::V12).is_ok()
        );
        // An RSA scheme with an EC key.
        assert!(verify(&certificate, SignatureScheme::RSA_PSS_SHA256, &sha256, Tls::V12).is_err());
    }

    #[test]
    fn openssl_verifies_a_v1_chain_at_the_handshakes_time_to_the_cluster_only() {
        let (ca_key, other_key) = (rsa(), rsa());
        let ca = version_1("flocker-1-cluster", &ca_key, None, NOW - DAY / 2);
        let leaf = version_1("user-plugin", &rsa(), Some((&ca, &ca_key)), NOW);
        let chains = OpenSslChains { roots: vec![ca.clone()] };
        let at = |seconds: i64| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds as u64))
        };
        assert!(chains.verify(&der(&leaf), &[], at(NOW + 60)).is_ok());
        let verdict = |time| chains.verify(&der(&leaf), &[], time).map_err(|refused| refused.error);
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let not_yet = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidYet);
        assert_eq!(verdict(at(NOW + 2 * DAY)), Err(expired));
        assert_eq!(verdict(at(NOW - 60)), Err(not_yet));
        // The same subject with another key, and a certificate that signed itself.
        let impostor = version_1("flocker-1-cluster", &other_key, None, NOW - DAY / 2);
        let forged = version_1("user-plugin", &rsa(), Some((&impostor, &other_key)), NOW);
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
        let refused = chains.verify(&der(&forged), &[], at(NOW + 60)).map_err(|r| r.error);
        assert_eq!(refused, Err(bad));
        let alone = version_1("user-plugin", &other_key, None, NOW);
        let refused = chains.verify(&der(&alone), &[], at(NOW + 60)).map_err(|r| r.error);
        assert_eq!(refused, Err(unknown));
    }

    #[test]
    fn a_v1_trust_anchor_is_what_webpki_makes_of_one() {
        // WebPKI reads a v1 certificate without extensions itself; ours must read the same.
        let key = rsa();
        let certificate = der(&version_1("flocker-1-cluster", &key, None, NOW));
        let mut webpki = RootCertStore::empty();
        webpki.add(certificate.clone()).unwrap();
        assert_eq!(version_1_trust_anchor(&certificate), Some(webpki.roots[0].clone()));
    }
}
