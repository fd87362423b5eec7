//! The certificates the cluster CA signs: control service, nodes and API
//! users. Each differs only in file name, common name, alternative names
//! and extended key usage.

use rcgen::{ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use uuid::Uuid;

use super::CaError;
use super::authority::Authority;
use super::names::{check_username, control_service_name};
use super::params::{base_params, generate_key};

/// The common name of the control service's certificate, also its first
/// DNS alternative name: clients look for it.
pub const CONTROL_SERVICE_NAME: &str = "control-service";

/// What distinguishes one kind of certificate from another.
pub struct LeafSpec {
    /// File name without `.crt`/`.key`.
    pub file_stem: String,
    pub common_name: String,
    pub subject_alt_names: Vec<SanType>,
    pub usages: Vec<ExtendedKeyUsagePurpose>,
}

/// The control service: `control-<hostname>`, a TLS server reachable as
/// `control-service` and as `hostname` (a DNS name or an IP address).
pub fn control_service(hostname: &str) -> Result<LeafSpec, CaError> {
    let address = control_service_name(hostname)?;
    let service = CONTROL_SERVICE_NAME
        .try_into()
        .map_err(|source| CaError::Generate { what: "control service name", source })?;
    Ok(LeafSpec {
        file_stem: format!("control-{hostname}"),
        common_name: CONTROL_SERVICE_NAME.to_owned(),
        subject_alt_names: vec![SanType::DnsName(service), address],
        usages: vec![ExtendedKeyUsagePurpose::ServerAuth],
    })
}

/// A node agent: `<node uuid>`, a TLS client named `node-<uuid>` (to the control service and
/// to other nodes when it pushes them a volume), and a TLS server of that DNS name (when other
/// nodes push volumes to it; they dial its address and verify the name they expect).
pub fn node(node_id: Uuid) -> Result<LeafSpec, CaError> {
    let common_name = format!("node-{node_id}");
    let name = common_name
        .clone()
        .try_into()
        .map_err(|source| CaError::Generate { what: "node name", source })?;
    Ok(LeafSpec {
        file_stem: node_id.to_string(),
        common_name,
        subject_alt_names: vec![SanType::DnsName(name)],
        usages: vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth],
    })
}

/// An API user: `<username>`, a TLS client named `user-<username>`.
pub fn api_user(username: &str) -> Result<LeafSpec, CaError> {
    check_username(username)?;
    Ok(LeafSpec {
        file_stem: username.to_owned(),
        common_name: format!("user-{username}"),
        subject_alt_names: Vec::new(),
        usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
    })
}

/// A leaf certificate and its new key, PEM-encoded.
pub struct IssuedLeaf {
    pub certificate_pem: String,
    pub key_pem: String,
}

/// Generates a key and has the CA sign a certificate for it: subject
/// `CN=<common name>, OU=<cluster uuid>`, basicConstraints CA:FALSE,
/// keyUsage digitalSignature, the extended key usage and alternative names
/// of `spec`, and subject and authority key identifiers.
pub fn issue(authority: &Authority, spec: &LeafSpec) -> Result<IssuedLeaf, CaError> {
    let key = generate_key("certificate key")?;
    let mut params = base_params(&spec.common_name, authority.cluster_id())?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = spec.usages.clone();
    params.subject_alt_names = spec.subject_alt_names.clone();
    params.use_authority_key_identifier_extension = true;
    let certificate_pem = authority.sign(&params, &key, "certificate")?;
    Ok(IssuedLeaf { certificate_pem, key_pem: key.serialize_pem() })
}
