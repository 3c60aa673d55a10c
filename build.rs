//! Generates the gRPC code from `schemas/proto` with protox (pure Rust), so a fresh machine builds
//! with `cargo build` alone, without `protoc`. The descriptor set is also written out for
//! gRPC reflection.

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "schemas/proto/lienthong/v1/events.proto",
        "schemas/proto/lienthong/v1/connectors.proto",
        "schemas/proto/lienthong/v1/dossiers.proto",
        "schemas/proto/lienthong/v1/audit.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // The migrations are embedded at compile time: a new file must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=src/sandbox/migrations");
    let descriptors = protox::compile(protos, ["schemas/proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("lienthong_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
