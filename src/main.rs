//! The command line: parse, then call the library.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "wgsl-cnn", version, about = "Train LeNet-5 on MNIST with WGSL compute shaders")]
struct Cli {
    /// GPU adapter to use: the first whose name contains this text (else WGPU_ADAPTER_NAME,
    /// else wgpu's default choice, honouring WGPU_BACKEND and WGPU_POWER_PREF).
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Directory holding the four MNIST IDX files (gzip'd or raw); missing ones are downloaded there.
    #[arg(long, global = true, env = "WGSL_CNN_DATA", default_value = wgsl_cnn::data::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see and run a tiny compute shader on the chosen one.
    Adapters,
    /// Load MNIST (downloading missing files unless --offline), verify it and print what was loaded.
    /// Mirrors: WGSL_CNN_MNIST_MIRRORS (comma-separated base URLs) or the built-in list.
    Data {
        /// Never download: fail if a file is missing.
        #[arg(long)]
        offline: bool,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let choice = wgsl_cnn::gpu::AdapterChoice { name: cli.adapter.clone() };
    match cli.command {
        Some(Command::Adapters) | None => adapters(&choice),
        Some(Command::Data { offline }) => wgsl_cnn::data::data_command(&cli.data_dir, offline),
    }
}

fn adapters(choice: &wgsl_cnn::gpu::AdapterChoice) -> Result<()> {
    use wgsl_cnn::gpu::{context::describe, list_adapters, smoke, GpuContext};
    for info in list_adapters() {
        println!("found: {}", describe(&info));
    }
    let ctx = GpuContext::new(choice)?;
    let a = ctx.buffer(4);
    ctx.write(&a, &[1.0f32, 2.0, 3.0, 4.0]);
    let out = ctx.buffer(4);
    smoke::scale_add_index(&ctx, &a, 2.0, &out);
    let got: Vec<f32> = ctx.read(&out);
    anyhow::ensure!(got == [2.0, 5.0, 8.0, 11.0], "the smoke kernel computed {got:?}, expected [2, 5, 8, 11]");
    println!("chosen: {} — compute shader OK", describe(&ctx.info));
    Ok(())
}
