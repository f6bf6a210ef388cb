//! Generates the gRPC code from `proto/` with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = "../../proto";
    let proto = "customers/v1/customers.proto";
    println!("cargo:rerun-if-changed={proto_root}/{proto}");
    let descriptors = protox::compile([proto], [proto_root])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("customers_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure().build_client(true).compile_fds(descriptors)?;
    Ok(())
}
