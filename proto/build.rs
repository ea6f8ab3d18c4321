fn main() -> Result<(), Box<dyn std::error::Error>> {
    // No protoc on the machine is needed: use the vendored binary.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    println!("cargo:rerun-if-changed=proto");
    // Small per-RPC buffers (src/codec.rs): a broker holds one ingest stream per agent.
    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .compile_protos(
            &[
                "proto/ringwatch/v1/ringwatch.proto",
                "proto/monitor/monitor.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
