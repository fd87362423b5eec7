//! The header is the contract: it must say exactly what the library exports.

use std::path::Path;

#[test]
fn the_committed_header_is_what_cbindgen_makes_of_the_exports() {
    let crate_dir = env!("CARGO_MANIFEST_DIR");
    let config = cbindgen::Config::from_file(Path::new(crate_dir).join("cbindgen.toml")).unwrap();
    let bindings =
        cbindgen::Builder::new().with_crate(crate_dir).with_config(config).generate().unwrap();
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let header = Path::new(crate_dir).join("include/flocker_isolator.h");
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::write(&header, &generated).unwrap();
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "{} differs from the exports; run `UPDATE_HEADER=1 cargo test -p flocker-isolator-ffi --test header` \
         and commit it. cbindgen makes:\n{}",
        header.display(),
        String::from_utf8_lossy(&generated)
    );
}
