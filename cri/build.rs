//! Generates the CRI v1 types, server and client from the vendored
//! proto/api.proto (cri-api v0.36.0, the version cri-tools v1.36.0 speaks).
//! protoc comes from the protoc-bin-vendored crate: a build needs no system
//! package and no network beyond crates.io.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
