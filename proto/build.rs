//! Compiles every `.proto` under `shop/` with protox (pure Rust, no system `protoc`)
//! into tonic clients and servers, and writes the file descriptor set that the
//! gateway and gRPC reflection read.

use std::path::{Path, PathBuf};

fn proto_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let mut files = Vec::new();
    proto_files(&root.join("shop"), &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=shop");
    println!("cargo:rerun-if-changed=google");

    let mut compiler = protox::Compiler::new([&root])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?;
    // Encoded by protox itself: custom options (google.api.http, shop.common.v1.access)
    // survive only in this form, not through prost_types.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("shopmesh_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Services whose issue has not landed implement only part of their trait;
        // the rest answers UNIMPLEMENTED.
        .generate_default_stubs(true)
        .compile_fds_with_config(fds, prost_config())?;
    Ok(())
}

/// Every message implements `prost::Name` with the canonical type URL
/// (`type.googleapis.com/<full name>`), so events can travel in a
/// `google.protobuf.Any` and be checked on the way out (shopmesh-events).
fn prost_config() -> tonic_prost_build::Config {
    let mut config = tonic_prost_build::Config::new();
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com");
    config
}
